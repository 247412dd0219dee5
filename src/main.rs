use std::process::ExitCode;

use clap::Parser;
use shipgate::cli::{AuditCommand, Cli, Command};
use shipgate::config::Config;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::CheckConfig { file, repo } = &cli.command {
        // Offline: no database, no GitHub; of the configuration only the notification channels.
        let get = |k: &str| std::env::var(k).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let channels = match shipgate::config::NotifySettings::from_lookup(&get) {
            Ok(n) => n.directory(),
            Err(e) => {
                eprintln!("configuration error: {e}");
                return ExitCode::from(2);
            }
        };
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        return match shipgate::cli::check_config(file, repo.as_deref(), &channels, &mut out, &mut err) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Simulate { policy, request, facts, at } = &cli.command {
        // Offline too: the App's decision over files.
        return match shipgate::cli::simulate(policy, request, facts.as_deref(), at.as_deref(), &mut std::io::stdout()) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    if let Command::Audit { command: AuditCommand::VerifyEvidence { path, public_key } } = &cli.command {
        // Offline too: no database, no secret; of the configuration only the signing key's public
        // half, and only when no key file is given.
        let configured = || {
            Config::from_env()
                .map(|c| c.signing_key.map(|k| k.public().clone()))
                .map_err(|e| format!("configuration error: {e}"))
        };
        return match shipgate::cli::verify_evidence(path, public_key.as_deref(), configured, &mut std::io::stdout()) {
            Ok(code) => ExitCode::from(code as u8),
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(2)
            }
        };
    }
    let cfg = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    // Traces are the server's (SPEC §5): the database commands export nothing.
    let traces = match &cli.command {
        Command::Serve => match shipgate::telemetry::Settings::from_env() {
            Ok(t) => t,
            Err(e) => {
                eprintln!("configuration error: {e}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    cap_malloc_arenas();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    // The exporter's batch task runs on the runtime.
    let traces = match traces.map(|t| rt.block_on(async { shipgate::telemetry::Traces::start(&t) })).transpose() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    init_tracing(cfg.log_json, traces.as_ref());
    let result = rt.block_on(async {
        match &cli.command {
            Command::Serve => shipgate::server::serve(cfg).await.map(|()| 0),
            cmd => shipgate::cli::run_db_command(&cfg, cmd, &mut std::io::stdout()).await,
        }
    });
    // The last spans go out while the runtime (which runs the exporter) is still up.
    if let Some(t) = traces {
        t.shutdown();
    }
    match result {
        Ok(code) => ExitCode::from(code as u8),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_tracing(json: bool, traces: Option<&shipgate::telemetry::Traces>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer, Registry};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // The spans made for traces only never show in the logs, whatever RUST_LOG says.
    let filter = match format!("{}=off", shipgate::telemetry::TRACE_ONLY).parse() {
        Ok(d) => filter.add_directive(d),
        Err(_) => filter,
    };
    // Colour only for a person at a terminal: not in files, journals or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(ansi);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        logs.json().with_current_span(true).with_span_list(false).with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    // The OpenTelemetry layer beside the logs, with its own filter (the App's spans only).
    tracing_subscriber::registry().with(logs).with(traces.map(|t| t.layer())).init();
}

/// glibc gives each thread that allocates its own arena, up to eight per core, and each keeps
/// its freed memory: the App's threads (the runtime's workers, one per SQLite connection) held
/// ~0.5 MB each of memory used once. Two arenas are enough for the runtime's two-to-a-few
/// workers and cut the peak under load (docs/benchmarks.md). `MALLOC_ARENA_MAX`, or
/// `glibc.malloc.arena_max` in `GLIBC_TUNABLES`, when set, wins: glibc has read it already.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none()
        && !std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc.arena_max"))
    {
        // SAFETY: mallopt only sets a tunable of the allocator; called before any thread is
        // started.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
