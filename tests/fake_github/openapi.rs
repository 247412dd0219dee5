#![allow(dead_code)]
//! Checks the requests the App sends to GitHub against GitHub's own OpenAPI description.
//!
//! The fake GitHub server used by the tests hands every incoming request to [`Spec::validate`];
//! any problem fails the test. The spec is `tests/fixtures/github-openapi-subset.json` (GitHub's
//! official OpenAPI 3.0.3 description from `@octokit/openapi`, cut down to the paths the App
//! calls; see `tests/fixtures/README.md`).
//!
//! What is checked:
//! * method + path must match an operation; path templates such as
//!   `/repos/{owner}/{repo}/issues/{issue_number}` are matched segment by segment, a literal
//!   segment taking precedence over a templated one;
//! * path and query parameter values must fit their schema (`issue_number=abc` fails), query
//!   parameter names must be declared (`per_pag` fails), required ones must be present;
//! * the JSON body must fit the `requestBody` schema, or be absent when there is none.
//!
//! Schema rules are those of JSON Schema as OpenAPI 3.0 uses it: `$ref` (into the same
//! document), `type`, `nullable` (read as "or null"), `enum`, `required`, `properties`,
//! `additionalProperties`, `items`, `allOf`, `anyOf`, `oneOf` (lenient: at least one alternative
//! must match, because GitHub's alternatives overlap), `minimum`/`maximum`,
//! `minLength`/`maxLength`, `minItems`/`maxItems` and `format: date-time`.
//!
//! GitHub's request schemas do not forbid unknown keys, so a typo such as `summery` would pass
//! plain JSON Schema validation and be silently ignored by GitHub. Request bodies are therefore
//! checked with a *strict unknown-key pass*: an object key that the schema does not define is an
//! error whenever the schema lists `properties` and says nothing about `additionalProperties`.
//! How composed schemas take part:
//! * a schema with its own `properties` (or with `allOf`) knows the union of the keys defined by
//!   itself and by all its `allOf`/`anyOf`/`oneOf` parts; the parts are then checked without
//!   their own unknown-key pass (GitHub's `PATCH check-runs` adds `anyOf` constraints on top of
//!   its properties this way);
//! * a schema that is *only* an `anyOf`/`oneOf` of complete object schemas (the deployment
//!   protection rule review, the `PUT labels` body) must match at least one alternative
//!   *including* its unknown-key pass. Otherwise `{"state": "approve", "comment": "…", …}` would
//!   slip through the "comment required" alternative, which does not define `state`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::{Map, Value};

/// The HTTP methods an OpenAPI path item may hold (as lowercase keys).
const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Path parameters whose value may contain `/` and so span several segments: the file path of
/// `GET /repos/{owner}/{repo}/contents/{path}`, and a git ref such as `heads/main` in
/// `/repos/{owner}/{repo}/commits/{ref}/…` (clients, octocrab among them, put both into the URL
/// without encoding the slashes, and GitHub accepts that).
const MULTI_SEGMENT_PARAMS: [&str; 2] = ["path", "ref"];

/// Limit on schema recursion while validating one value: guards against `$ref` cycles that do
/// not descend into the value (a value's own nesting is finite).
const MAX_DEPTH: usize = 200;

/// Limit on a chain of `$ref`s pointing at `$ref`s.
const MAX_REF_HOPS: usize = 32;

/// The file name of the spec fixture, under `tests/fixtures/`.
const FIXTURE: &str = "github-openapi-subset.json";

/// A parsed OpenAPI document plus a routing table built from its `paths`.
pub struct Spec {
    /// The whole document; schemas are read from it on demand.
    doc: Value,
    /// One entry per path template, in document order.
    routes: Vec<Route>,
    /// operationId -> (path template, lowercase method).
    by_operation_id: HashMap<String, (String, String)>,
}

/// The operation a request was matched to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    /// GitHub's operationId, e.g. `issues/create-comment`.
    pub operation_id: String,
    /// Uppercase HTTP method, e.g. `POST`.
    pub method: String,
    /// The path template, e.g. `/repos/{owner}/{repo}/issues/{issue_number}/comments`.
    pub template: String,
    /// Template parameter -> value from the concrete path (percent-decoded).
    pub path_params: BTreeMap<String, String>,
}

/// A path template split into segments.
struct Route {
    template: String,
    segments: Vec<Segment>,
    /// (lowercase method, operationId) for each operation of the path item.
    operations: Vec<(String, String)>,
}

enum Segment {
    Literal(String),
    Param { name: String, multi: bool },
}

/// How one concrete path segment was matched. Smaller is more specific: candidate templates are
/// ranked by comparing these lists left to right, so a literal segment wins over a templated one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum SegmentMatch {
    Literal,
    Param,
    MultiParam,
}

/// A way of matching a path: the rank of each concrete segment, and the parameter values.
type RankedParams = (Vec<SegmentMatch>, Vec<(String, String)>);

/// A successful match of a concrete path against one template.
struct RouteMatch<'a> {
    route: &'a Route,
    rank: Vec<SegmentMatch>,
    params: Vec<(String, String)>,
}

impl Spec {
    /// Loads and indexes the spec at `path` (normally `tests/fixtures/github-openapi-subset.json`).
    /// Panics with the reason if the file is missing or not a usable OpenAPI document.
    pub fn load(path: &Path) -> Spec {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read the OpenAPI spec {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the OpenAPI spec {} is not valid JSON: {e}", path.display()));
        Spec::from_value(doc)
    }

    /// The spec fixture of this crate, parsed once per process (the file is 2.5 MB).
    pub fn github() -> &'static Spec {
        static SPEC: OnceLock<Spec> = OnceLock::new();
        SPEC.get_or_init(|| Spec::load(&Spec::fixture_path()))
    }

    /// `CARGO_MANIFEST_DIR/tests/fixtures/github-openapi-subset.json`.
    pub fn fixture_path() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures").join(FIXTURE)
    }

    /// Indexes an already parsed OpenAPI document (also handy for small hand-made specs).
    pub fn from_value(doc: Value) -> Spec {
        let paths = doc
            .get("paths")
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("the OpenAPI document has no `paths` object"));
        let mut routes = Vec::new();
        let mut by_operation_id = HashMap::new();
        for (template, item) in paths {
            let mut operations = Vec::new();
            for method in HTTP_METHODS {
                let Some(op) = item.get(method) else { continue };
                let id = op
                    .get("operationId")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| panic!("{} {template} has no operationId", method.to_uppercase()));
                by_operation_id.insert(id.to_string(), (template.clone(), method.to_string()));
                operations.push((method.to_string(), id.to_string()));
            }
            routes.push(Route { template: template.clone(), segments: parse_template(template), operations });
        }
        Spec { doc, routes, by_operation_id }
    }

    /// The raw OpenAPI document.
    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// Every operation as (uppercase method, path template, operationId), in document order.
    pub fn operations(&self) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        for route in &self.routes {
            for (method, id) in &route.operations {
                out.push((method.to_uppercase(), route.template.clone(), id.clone()));
            }
        }
        out
    }

    /// The operation object (`paths[template][method]`) with this operationId.
    pub fn operation_by_id(&self, operation_id: &str) -> Option<&Value> {
        let (template, method) = self.by_operation_id.get(operation_id)?;
        self.doc.get("paths")?.get(template)?.get(method)
    }

    /// Finds the operation for `method` and a concrete path such as
    /// `/repos/acme/app/issues/12/comments` (no query string). When several templates match,
    /// the one with literal segments furthest to the left wins (`/x/mine` before `/x/{id}`).
    pub fn find(&self, method: &str, path: &str) -> Option<Operation> {
        let method = method.to_ascii_lowercase();
        self.match_path(path).into_iter().find_map(|m| {
            let (_, id) = m.route.operations.iter().find(|(candidate, _)| *candidate == method)?;
            Some(Operation {
                operation_id: id.clone(),
                method: method.to_uppercase(),
                template: m.route.template.clone(),
                path_params: m.params.into_iter().collect(),
            })
        })
    }

    /// Validates one request the App sent. `query` holds the decoded query pairs in order,
    /// `body` the parsed JSON body (`None` or `Some(null)` when there is none).
    ///
    /// Returns the matched operation, or every problem found, one human-readable line each,
    /// naming where it is: `path issue_number: …`, `query per_page: …`, `body/output/summary: …`.
    pub fn validate(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        body: Option<&serde_json::Value>,
    ) -> Result<Operation, Vec<String>> {
        let method_upper = method.to_ascii_uppercase();
        if path.contains('?') {
            return Err(vec![format!(
                "{method_upper} {path}: the path contains a query string; pass the query pairs separately"
            )]);
        }
        let Some(operation) = self.find(method, path) else {
            return Err(vec![self.explain_no_match(&method_upper, path)]);
        };
        let method_lower = method.to_ascii_lowercase();
        let Some(op) =
            self.doc.get("paths").and_then(|p| p.get(&operation.template)).and_then(|i| i.get(&method_lower))
        else {
            return Err(vec![format!("{method_upper} {}: operation vanished from the spec", operation.template)]);
        };

        let mut problems = Vec::new();
        let parameters = self.parameters(&operation.template, &method_lower, &mut problems);

        // Path parameters: the matcher already found a value for each; check it fits the schema.
        for param in parameters.iter().filter(|p| p.get("in").and_then(Value::as_str) == Some("path")) {
            let name = param_name(param);
            match operation.path_params.get(name) {
                Some(raw) => self.check_raw_param(param, &[raw.as_str()], &format!("path {name}"), &mut problems),
                None => problems.push(format!(
                    "path {name}: declared by {} but not in its template {} (spec inconsistency)",
                    operation.operation_id, operation.template
                )),
            }
        }

        // Query parameters: names must be declared, values must fit, required ones present.
        let declared: BTreeMap<&str, &Value> = parameters
            .iter()
            .filter(|p| p.get("in").and_then(Value::as_str) == Some("query"))
            .map(|p| (param_name(p), *p))
            .collect();
        let mut given: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (name, value) in query {
            given.entry(name.as_str()).or_default().push(value.as_str());
        }
        for (name, values) in &given {
            match declared.get(name) {
                Some(param) => self.check_raw_param(param, values, &format!("query {name}"), &mut problems),
                None => {
                    let known: Vec<&str> = declared.keys().copied().collect();
                    let known = if known.is_empty() { "none".to_string() } else { known.join(", ") };
                    problems.push(format!(
                        "query {name}: unknown parameter for {} (known: {known}){}",
                        operation.operation_id,
                        did_you_mean(name, declared.keys().copied())
                    ));
                }
            }
        }
        for (name, param) in &declared {
            if param.get("required") == Some(&Value::Bool(true)) && !given.contains_key(name) {
                problems.push(format!("query {name}: required parameter missing"));
            }
        }

        // Body.
        let body = body.filter(|b| !b.is_null());
        let request_body = match op.get("requestBody").map(|rb| self.resolve(rb)) {
            Some(Ok(rb)) => Some(rb),
            Some(Err(e)) => {
                problems.push(format!("body: {e}"));
                None
            }
            None => None,
        };
        match (request_body, body) {
            (None, None) => {}
            (None, Some(value)) => problems.push(format!(
                "body: {} takes no request body, but got {}",
                operation.operation_id,
                describe(value)
            )),
            (Some(rb), None) => {
                if rb.get("required") == Some(&Value::Bool(true)) {
                    problems.push(format!("body: required request body missing for {}", operation.operation_id));
                }
            }
            (Some(rb), Some(value)) => match json_media(rb).and_then(|media| media.get("schema")) {
                Some(schema) => problems.extend(self.validate_value_at(schema, value, true, "body")),
                None => problems
                    .push(format!("body: {} declares no application/json request body schema", operation.operation_id)),
            },
        }

        if problems.is_empty() { Ok(operation) } else { Err(problems) }
    }

    /// The JSON schema of the response `status` (e.g. 200, 201) of an operation, with `$ref`s at
    /// its top resolved (nested ones are resolved by [`Spec::validate_value`]). Falls back to a
    /// `2XX`-style range and to `default`. `None` for an unknown operation or a response without
    /// JSON content (e.g. 204).
    pub fn response_schema(&self, operation_id: &str, status: u16) -> Option<&serde_json::Value> {
        let responses = self.operation_by_id(operation_id)?.get("responses")?.as_object()?;
        let response = responses
            .get(&status.to_string())
            .or_else(|| responses.get(&format!("{}XX", status / 100)))
            .or_else(|| responses.get("default"))?;
        let schema = json_media(self.resolve(response).ok()?)?.get("schema")?;
        self.resolve(schema).ok()
    }

    /// The JSON schema of an operation's request body, top-level `$ref`s resolved.
    pub fn request_schema(&self, operation_id: &str) -> Option<&serde_json::Value> {
        let request_body = self.resolve(self.operation_by_id(operation_id)?.get("requestBody")?).ok()?;
        self.resolve(json_media(request_body)?.get("schema")?).ok()
    }

    /// Validates `value` against `schema` (which may be or contain `$ref`s into this document).
    /// Problems name the JSON pointer of the offending value (`/output/summary: …`; the root is
    /// `/`). `strict_unknown_keys` turns on the unknown-key pass described in the module docs.
    pub fn validate_value(
        &self,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        strict_unknown_keys: bool,
    ) -> Vec<String> {
        self.validate_value_at(schema, value, strict_unknown_keys, "")
    }

    /// As [`Spec::validate_value`], with problem paths starting with `root` (e.g. `body`).
    pub fn validate_value_at(
        &self,
        schema: &serde_json::Value,
        value: &serde_json::Value,
        strict_unknown_keys: bool,
        root: &str,
    ) -> Vec<String> {
        let checker = Checker { spec: self, strict: strict_unknown_keys };
        let mut problems = Vec::new();
        checker.check(schema, value, root, strict_unknown_keys, 0, &mut problems);
        problems.iter().map(Problem::render).collect()
    }

    /// Follows `$ref`s (`#/…` JSON pointers into this document) until a non-reference.
    pub fn resolve<'a>(&'a self, mut node: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = node.get("$ref") else { return Ok(node) };
            let reference =
                reference.as_str().ok_or_else(|| format!("schema error: $ref is not a string: {reference}"))?;
            let pointer = reference
                .strip_prefix('#')
                .ok_or_else(|| format!("schema error: only local $refs are supported, got {reference:?}"))?;
            node = self.doc.pointer(pointer).ok_or_else(|| format!("schema error: unresolvable $ref {reference:?}"))?;
        }
        Err(format!("schema error: more than {MAX_REF_HOPS} chained $refs (cycle?)"))
    }

    // ----- internals -------------------------------------------------------------------------

    /// Every template matching `path`, most specific first.
    fn match_path(&self, path: &str) -> Vec<RouteMatch<'_>> {
        let Some(rest) = path.strip_prefix('/') else { return Vec::new() };
        let parts: Vec<&str> = rest.split('/').collect();
        let mut matches: Vec<RouteMatch<'_>> = self
            .routes
            .iter()
            .filter_map(|route| {
                let mut best = None;
                match_segments(&route.segments, &parts, &mut Vec::new(), &mut Vec::new(), &mut best);
                best.map(|(rank, params)| RouteMatch { route, rank, params })
            })
            .collect();
        matches.sort_by(|a, b| a.rank.cmp(&b.rank));
        matches
    }

    /// Why no operation matched: unknown path, or known path with other methods.
    fn explain_no_match(&self, method: &str, path: &str) -> String {
        let matches = self.match_path(path);
        if matches.is_empty() {
            return format!(
                "{method} {path}: no path in the spec matches (an endpoint missing from tests/fixtures/{FIXTURE}, \
                 or a wrong URL)"
            );
        }
        let offers: Vec<String> = matches
            .iter()
            .map(|m| {
                let methods: Vec<String> = m.route.operations.iter().map(|(meth, _)| meth.to_uppercase()).collect();
                format!("{} allows {}", m.route.template, methods.join(", "))
            })
            .collect();
        format!("{method} {path}: method not allowed ({})", offers.join("; "))
    }

    /// The parameters of an operation: the path item's, overridden by the operation's own
    /// (same name and `in`), with `$ref`s resolved.
    fn parameters(&self, template: &str, method: &str, problems: &mut Vec<String>) -> Vec<&Value> {
        let item = &self.doc["paths"][template];
        let mut out: Vec<&Value> = Vec::new();
        let lists = [item.get("parameters"), item.get(method).and_then(|op| op.get("parameters"))];
        for list in lists.into_iter().flatten().filter_map(Value::as_array) {
            for param in list {
                let param = match self.resolve(param) {
                    Ok(p) => p,
                    Err(e) => {
                        problems.push(format!("parameter of {method} {template}: {e}"));
                        continue;
                    }
                };
                let key = (param.get("name"), param.get("in"));
                out.retain(|p| (p.get("name"), p.get("in")) != key);
                out.push(param);
            }
        }
        out
    }

    /// Checks the raw string value(s) of one path or query parameter against its schema.
    /// Several values (a repeated query name) are only allowed for array parameters.
    fn check_raw_param(&self, param: &Value, values: &[&str], label: &str, problems: &mut Vec<String>) {
        let Some(schema) = param.get("schema") else { return };
        let schema = match self.resolve(schema) {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{label}: {e}"));
                return;
            }
        };
        if schema.get("type").and_then(Value::as_str) == Some("array") {
            // `form` style: repeated names (explode) or one comma-separated value.
            let items_schema = schema.get("items").unwrap_or(&Value::Bool(true));
            let mut items = Vec::new();
            for raw in values.iter().flat_map(|v| v.split(',')) {
                match self.parse_raw(items_schema, raw) {
                    Ok(item) => items.push(item),
                    Err(e) => {
                        problems.push(format!("{label}: {e}"));
                        return;
                    }
                }
            }
            problems.extend(self.validate_value_at(schema, &Value::Array(items), false, label));
            return;
        }
        if values.len() > 1 {
            problems
                .push(format!("{label}: given {} times ({values:?}) but it is not an array parameter", values.len()));
        }
        for raw in values {
            match self.parse_raw(schema, raw) {
                Ok(value) => problems.extend(self.validate_value_at(schema, &value, false, label)),
                Err(e) => problems.push(format!("{label}: {e}")),
            }
        }
    }

    /// Turns a raw path/query string into the JSON value its schema's `type` expects.
    fn parse_raw(&self, schema: &Value, raw: &str) -> Result<Value, String> {
        let schema = self.resolve(schema)?;
        let quoted = Value::String(raw.to_string());
        match schema.get("type").and_then(Value::as_str) {
            Some("integer") => raw.parse::<i64>().map(Value::from).map_err(|_| format!("{quoted} is not an integer")),
            Some("number") => raw
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| format!("{quoted} is not a number")),
            Some("boolean") => match raw {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                _ => Err(format!("{quoted} is not a boolean (true or false)")),
            },
            _ => Ok(quoted),
        }
    }
}

// ----- path templates ------------------------------------------------------------------------

fn parse_template(template: &str) -> Vec<Segment> {
    template
        .trim_start_matches('/')
        .split('/')
        .map(|segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(name) => Segment::Param { name: name.to_string(), multi: MULTI_SEGMENT_PARAMS.contains(&name) },
            None => {
                assert!(!segment.contains('{'), "unsupported partial template segment {segment:?} in {template}");
                Segment::Literal(segment.to_string())
            }
        })
        .collect()
}

/// Matches template `segments` against concrete path `parts` (backtracking over how many parts a
/// multi-segment parameter takes), keeping the most specific way in `best`.
fn match_segments(
    segments: &[Segment],
    parts: &[&str],
    rank: &mut Vec<SegmentMatch>,
    params: &mut Vec<(String, String)>,
    best: &mut Option<RankedParams>,
) {
    let Some((segment, rest)) = segments.split_first() else {
        if parts.is_empty() && best.as_ref().is_none_or(|(best_rank, _)| *rank < *best_rank) {
            *best = Some((rank.clone(), params.clone()));
        }
        return;
    };
    match segment {
        Segment::Literal(literal) => {
            if let Some((first, more)) = parts.split_first()
                && first == literal
            {
                rank.push(SegmentMatch::Literal);
                match_segments(rest, more, rank, params, best);
                rank.pop();
            }
        }
        Segment::Param { name, multi } => {
            let max_take = if *multi { parts.len() } else { parts.len().min(1) };
            for take in 1..=max_take {
                let taken = &parts[..take];
                // An empty segment (`//`, trailing `/`) never fills a parameter.
                if taken.iter().any(|p| p.is_empty()) {
                    break;
                }
                let value = taken.iter().map(|p| percent_decode(p)).collect::<Vec<_>>().join("/");
                let kind = if take == 1 { SegmentMatch::Param } else { SegmentMatch::MultiParam };
                rank.extend(std::iter::repeat_n(kind, take));
                params.push((name.clone(), value));
                match_segments(rest, &parts[take..], rank, params, best);
                params.pop();
                rank.truncate(rank.len() - take);
            }
        }
    }
}

/// Decodes `%XX` escapes (invalid escapes are kept as they are; bytes that are not UTF-8 are
/// replaced).
fn percent_decode(text: &str) -> String {
    fn hex(byte: u8) -> Option<u8> {
        (byte as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push(high * 16 + low);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ----- schema validation ---------------------------------------------------------------------

/// What a problem is about; used to pick the closest `anyOf`/`oneOf` alternative.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ProblemKind {
    /// The value has the wrong JSON type for the schema.
    WrongType,
    /// An object key the schema does not define.
    UnknownKey,
    /// Anything else (enum, required, bounds, format, schema errors).
    Other,
}

#[derive(Clone)]
struct Problem {
    /// Where: a JSON pointer below the root label (`body/output/summary`).
    path: String,
    kind: ProblemKind,
    message: String,
}

impl Problem {
    fn render(&self) -> String {
        let path = if self.path.is_empty() { "/" } else { self.path.as_str() };
        format!("{path}: {}", self.message)
    }
}

/// How an object schema treats keys it does not list in `properties`.
enum KeyPolicy<'a> {
    /// No unknown-key check at this level (lenient mode, free-form object, or the check is left
    /// to the `anyOf`/`oneOf` alternatives).
    Unchecked,
    /// `additionalProperties: true`.
    Open,
    /// `additionalProperties: false`: only these keys are allowed.
    Denied(BTreeSet<String>),
    /// `additionalProperties: {schema}`: other keys must fit it.
    Schema(&'a Value),
    /// Strict unknown-key pass: keys outside this set are reported.
    Known(BTreeSet<String>),
}

struct Checker<'s> {
    spec: &'s Spec,
    /// Strict unknown-key pass for every object below the root.
    strict: bool,
}

impl<'s> Checker<'s> {
    /// Checks `value` (found at `path`) against `schema`, appending problems to `out`.
    /// `strict_here` says whether the unknown-key pass applies to this very value (it is off for
    /// the `allOf`/`anyOf` parts of a schema that does that pass itself).
    fn check(
        &self,
        schema: &'s Value,
        value: &Value,
        path: &str,
        strict_here: bool,
        depth: usize,
        out: &mut Vec<Problem>,
    ) {
        if depth > MAX_DEPTH {
            out.push(other(path, format!("schema error: nesting deeper than {MAX_DEPTH} levels (a $ref cycle?)")));
            return;
        }
        let schema = match self.spec.resolve(schema) {
            Ok(s) => s,
            Err(e) => return out.push(other(path, e)),
        };
        let s = match schema {
            Value::Object(s) => s,
            Value::Bool(true) => return,
            Value::Bool(false) => return out.push(other(path, "no value is allowed here".to_string())),
            _ => {
                return out.push(other(path, format!("schema error: not a schema: {}", truncate(&schema.to_string()))));
            }
        };

        // OpenAPI 3.0: `nullable: true` means "or null", whatever else the schema says.
        let nullable = s.get("nullable") == Some(&Value::Bool(true));
        if value.is_null() && nullable {
            return;
        }
        if let Some(expected) = s.get("type").and_then(Value::as_str)
            && !type_matches(expected, value)
        {
            let or_null = if nullable { " or null" } else { "" };
            let message = format!("expected {expected}{or_null}, got {}", describe(value));
            return out.push(Problem { path: path.to_string(), kind: ProblemKind::WrongType, message });
        }
        // OpenAPI 3.1 (the App's own document): `type` may list several, `["string", "null"]`.
        if let Some(types) = s.get("type").and_then(Value::as_array) {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            if !names.iter().any(|t| type_matches(t, value)) {
                let message = format!("expected {}, got {}", names.join(" or "), describe(value));
                return out.push(Problem { path: path.to_string(), kind: ProblemKind::WrongType, message });
            }
            if value.is_null() {
                return;
            }
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            out.push(other(
                path,
                format!("{} is not one of {}", truncate(&value.to_string()), Value::from(options.clone())),
            ));
        }

        // Keywords for the value's own JSON type.
        let mut alternatives_strict = strict_here;
        match value {
            Value::String(text) => self.check_string(s, text, path, out),
            Value::Number(number) => check_number(s, number, path, out),
            Value::Array(items) => {
                let count = items.len() as u64;
                if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                    && count < min
                {
                    out.push(other(path, format!("{count} items, fewer than minItems {min}")));
                }
                if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                    && count > max
                {
                    out.push(other(path, format!("{count} items, more than maxItems {max}")));
                }
                if let Some(item_schema) = s.get("items") {
                    for (i, item) in items.iter().enumerate() {
                        self.check(item_schema, item, &format!("{path}/{i}"), self.strict, depth + 1, out);
                    }
                }
            }
            Value::Object(map) => {
                let policy = self.key_policy(s, strict_here, depth);
                // Only when this level leaves the key check to its alternatives do they get it.
                alternatives_strict = strict_here && matches!(policy, KeyPolicy::Unchecked);
                self.check_object(s, map, path, policy, depth, out);
            }
            Value::Null | Value::Bool(_) => {}
        }

        // Composition.
        if let Some(parts) = s.get("allOf").and_then(Value::as_array) {
            for part in parts {
                self.check(part, value, path, alternatives_strict, depth + 1, out);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(alternatives) = s.get(keyword).and_then(Value::as_array) {
                self.check_alternatives(keyword, alternatives, value, path, alternatives_strict, depth, out);
            }
        }
    }

    fn check_string(&self, s: &Map<String, Value>, text: &str, path: &str, out: &mut Vec<Problem>) {
        let length = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && length < min
        {
            out.push(other(path, format!("string of {length} characters, shorter than minLength {min}")));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && length > max
        {
            out.push(other(path, format!("string of {length} characters, longer than maxLength {max}")));
        }
        // Other formats (uri, uri-template, email, int64…) are not checked.
        if s.get("format").and_then(Value::as_str) == Some("date-time") && !is_rfc3339(text) {
            out.push(other(path, format!("{} is not an RFC 3339 date-time", Value::from(truncate(text)))));
        }
    }

    /// Decides how this object level treats keys not in `properties` (see the module docs).
    fn key_policy(&self, s: &'s Map<String, Value>, strict_here: bool, depth: usize) -> KeyPolicy<'s> {
        match s.get("additionalProperties") {
            Some(Value::Bool(false)) => KeyPolicy::Denied(own_property_names(s)),
            Some(Value::Bool(true)) => KeyPolicy::Open,
            Some(extra @ Value::Object(_)) => KeyPolicy::Schema(extra),
            Some(_) => KeyPolicy::Open,
            None if !strict_here => KeyPolicy::Unchecked,
            None if s.contains_key("properties") || s.contains_key("allOf") => match self.known_keys(s, depth) {
                Some(known) if !known.is_empty() => KeyPolicy::Known(known),
                Some(_) => KeyPolicy::Unchecked,
                None => KeyPolicy::Open,
            },
            // A pure anyOf/oneOf (its alternatives check keys) or a free-form object.
            None => KeyPolicy::Unchecked,
        }
    }

    /// The keys a schema defines: its `properties` and `required`, plus those of its
    /// `allOf`/`anyOf`/`oneOf` parts. `None` if an `allOf` part accepts any key.
    fn known_keys(&self, s: &Map<String, Value>, depth: usize) -> Option<BTreeSet<String>> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut known = own_property_names(s);
        known.extend(
            s.get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from),
        );
        for keyword in ["allOf", "anyOf", "oneOf"] {
            for part in s.get(keyword).and_then(Value::as_array).into_iter().flatten() {
                let Some(part) = self.spec.resolve(part).ok().and_then(Value::as_object) else { continue };
                let keys = self.known_keys(part, depth + 1);
                if keyword == "allOf" {
                    // An allOf part that accepts any key makes the whole object accept any key.
                    if matches!(part.get("additionalProperties"), Some(Value::Bool(true) | Value::Object(_))) {
                        return None;
                    }
                    known.extend(keys?);
                } else {
                    // anyOf/oneOf parts only contribute names, even when they say
                    // `additionalProperties: true` (GitHub's PATCH check-runs uses such parts as
                    // extra constraints on top of its own properties).
                    known.extend(keys.unwrap_or_default());
                }
            }
        }
        Some(known)
    }

    fn check_object(
        &self,
        s: &'s Map<String, Value>,
        map: &Map<String, Value>,
        path: &str,
        policy: KeyPolicy<'s>,
        depth: usize,
        out: &mut Vec<Problem>,
    ) {
        for name in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(name) {
                out.push(other(&child(path, name), "missing required key".to_string()));
            }
        }
        let properties = s.get("properties").and_then(Value::as_object);
        for (key, item) in map {
            let child_path = child(path, key);
            if let Some(property) = properties.and_then(|p| p.get(key)) {
                self.check(property, item, &child_path, self.strict, depth + 1, out);
                continue;
            }
            match &policy {
                KeyPolicy::Denied(known) => {
                    out.push(unknown_key(&child_path, key, known, " (the schema allows no others)"))
                }
                KeyPolicy::Known(known) if !known.contains(key) => out.push(unknown_key(&child_path, key, known, "")),
                KeyPolicy::Schema(extra) => self.check(extra, item, &child_path, self.strict, depth + 1, out),
                KeyPolicy::Known(_) | KeyPolicy::Open | KeyPolicy::Unchecked => {}
            }
        }
    }

    /// `anyOf`/`oneOf`, leniently: valid if at least one alternative accepts the value. If none
    /// does, reports the closest alternative's problems (see [`score`]).
    #[allow(clippy::too_many_arguments)]
    fn check_alternatives(
        &self,
        keyword: &str,
        alternatives: &'s [Value],
        value: &Value,
        path: &str,
        strict_here: bool,
        depth: usize,
        out: &mut Vec<Problem>,
    ) {
        let mut failures: Vec<(usize, Vec<Problem>)> = Vec::new();
        for (index, alternative) in alternatives.iter().enumerate() {
            let mut problems = Vec::new();
            self.check(alternative, value, path, strict_here, depth + 1, &mut problems);
            if problems.is_empty() {
                return;
            }
            failures.push((index, problems));
        }
        let Some(closest) = failures.iter().min_by_key(|(_, problems)| score(problems, path)) else { return };
        let count = alternatives.len();
        if failures.iter().all(|(_, problems)| score(problems, path).0) {
            // Not even the JSON type fits any alternative: one line says it all.
            let labels: Vec<String> = alternatives.iter().map(|a| self.label(a)).collect();
            let message = format!("expected {} ({keyword}), got {}", labels.join(" or "), describe(value));
            return out.push(Problem { path: path.to_string(), kind: ProblemKind::WrongType, message });
        }
        let (index, problems) = closest;
        let label = self.label(&alternatives[*index]);
        out.push(other(
            path,
            format!(
                "matches none of the {count} {keyword} alternatives; closest is #{} ({label}), whose problems follow",
                index + 1
            ),
        ));
        out.extend(problems.iter().cloned());
    }

    /// A short name for a schema in messages: its `$ref` target, else its `type`.
    fn label(&self, schema: &Value) -> String {
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            return reference.rsplit('/').next().unwrap_or(reference).to_string();
        }
        match schema.get("type").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => "untyped schema".to_string(),
        }
    }
}

/// Ranks an alternative's problems, smaller = closer: a wrong JSON type at the alternative's
/// root is worst, then unknown keys (the value was probably meant for another alternative), then
/// the number of problems.
fn score(problems: &[Problem], path: &str) -> (bool, usize, usize) {
    let wrong_type = problems.iter().any(|p| p.kind == ProblemKind::WrongType && p.path == path);
    let unknown = problems.iter().filter(|p| p.kind == ProblemKind::UnknownKey).count();
    (wrong_type, unknown, problems.len())
}

fn check_number(s: &Map<String, Value>, number: &serde_json::Number, path: &str, out: &mut Vec<Problem>) {
    let Some(x) = number.as_f64() else { return };
    let exclusive = |key| s.get(key) == Some(&Value::Bool(true));
    if let Some(min) = s.get("minimum").and_then(Value::as_f64)
        && (x < min || (exclusive("exclusiveMinimum") && x == min))
    {
        out.push(other(path, format!("{number} is below the minimum {min}")));
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64)
        && (x > max || (exclusive("exclusiveMaximum") && x == max))
    {
        out.push(other(path, format!("{number} is above the maximum {max}")));
    }
}

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "string" => value.is_string(),
        // A whole number, also when written as `3.0`.
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.is_finite() && f.fract() == 0.0)
            }
            _ => false,
        },
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// Loose RFC 3339 check: `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` with plausible field ranges.
fn is_rfc3339(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(range)?;
        part.iter().all(u8::is_ascii_digit).then(|| part.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    };
    let at = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    let fields = (digits(0..4), digits(5..7), digits(8..10), digits(11..13), digits(14..16), digits(17..19));
    let (Some(_year), Some(month), Some(day), Some(hour), Some(minute), Some(second)) = fields else { return false };
    if !(at(4, b"-") && at(7, b"-") && at(10, b"Tt") && at(13, b":") && at(16, b":")) {
        return false;
    }
    if !((1..=12).contains(&month) && (1..=31).contains(&day) && hour <= 23 && minute <= 59 && second <= 60) {
        return false;
    }
    let mut i = 19;
    if at(i, b".") {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match b.get(i) {
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            i + 6 == b.len()
                && at(i + 3, b":")
                && digits(i + 1..i + 3).is_some_and(|h| h <= 23)
                && digits(i + 4..i + 6).is_some_and(|m| m <= 59)
        }
        _ => false,
    }
}

// ----- small helpers -------------------------------------------------------------------------

fn other(path: &str, message: String) -> Problem {
    Problem { path: path.to_string(), kind: ProblemKind::Other, message }
}

fn unknown_key(path: &str, key: &str, known: &BTreeSet<String>, note: &str) -> Problem {
    let list = known.iter().map(String::as_str).collect::<Vec<_>>().join(", ");
    let message = format!("unknown key{note} (known: {list}){}", did_you_mean(key, known.iter().map(String::as_str)));
    Problem { path: path.to_string(), kind: ProblemKind::UnknownKey, message }
}

/// `path/key`, escaping the key as a JSON pointer token.
fn child(path: &str, key: &str) -> String {
    format!("{path}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn own_property_names(s: &Map<String, Value>) -> BTreeSet<String> {
    s.get("properties").and_then(Value::as_object).map(|p| p.keys().cloned().collect()).unwrap_or_default()
}

/// The `application/json` (or other `…json`) media type object of a request body or response.
fn json_media(holder: &Value) -> Option<&Value> {
    let content = holder.get("content")?.as_object()?;
    content.get("application/json").or_else(|| content.iter().find(|(k, _)| k.contains("json")).map(|(_, v)| v))
}

fn param_name(param: &Value) -> &str {
    param.get("name").and_then(Value::as_str).unwrap_or("?")
}

/// A value's JSON type and (shortened) text, for messages: `string "abc"`, `object {…}`.
fn describe(value: &Value) -> String {
    let kind = match value {
        Value::Null => return "null".to_string(),
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    };
    format!("{kind} {}", truncate(&value.to_string()))
}

fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        format!("{}…", text.chars().take(MAX).collect::<String>())
    }
}

/// `; did you mean "summary"?` when a known name is within two edits of `name` (and the names
/// are long enough for that to mean something).
fn did_you_mean<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> String {
    known
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= 2 && 3 * distance <= name.len().max(candidate.len()))
        .min()
        .map(|(_, candidate)| format!("; did you mean {candidate:?}?"))
        .unwrap_or_default()
}

/// Levenshtein distance over chars.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> &'static Spec {
        Spec::github()
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    /// Validates a request that must be accepted; returns its operation.
    fn accepted(method: &str, path: &str, query: &[(&str, &str)], body: Option<Value>) -> Operation {
        spec()
            .validate(method, path, &pairs(query), body.as_ref())
            .unwrap_or_else(|problems| panic!("{method} {path} should be valid, got:\n{}", problems.join("\n")))
    }

    /// Validates a request that must be rejected; returns the problems.
    fn rejected(method: &str, path: &str, query: &[(&str, &str)], body: Option<Value>) -> Vec<String> {
        match spec().validate(method, path, &pairs(query), body.as_ref()) {
            Ok(op) => panic!("{method} {path} should be rejected, but matched {} without problems", op.operation_id),
            Err(problems) => problems,
        }
    }

    #[track_caller]
    fn assert_mentions(problems: &[String], needle: &str) {
        assert!(
            problems.iter().any(|p| p.contains(needle)),
            "expected a problem containing {needle:?}, got:\n{}",
            problems.join("\n")
        );
    }

    /// A tiny hand-made spec for routing and recursion cases the GitHub subset lacks.
    fn mini_spec() -> Spec {
        Spec::from_value(json!({
            "openapi": "3.0.3",
            "paths": {
                "/things/{id}": {"get": {"operationId": "things/get",
                    "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                    "responses": {}}},
                "/things/mine": {"get": {"operationId": "things/mine", "responses": {}}},
                "/things/{id}/parts": {"get": {"operationId": "things/parts",
                    "parameters": [
                        {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                        {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "integer"}}},
                        {"name": "kind", "in": "query", "required": true, "schema": {"type": "string"}}
                    ],
                    "responses": {}}}
            },
            "components": {"schemas": {
                "loop": {"$ref": "#/components/schemas/loop"},
                "self-all-of": {"allOf": [{"$ref": "#/components/schemas/self-all-of"}]},
                "node": {"type": "object", "properties": {
                    "name": {"type": "string"},
                    "child": {"$ref": "#/components/schemas/node"}
                }}
            }}
        }))
    }

    // ----- loading and routing ---------------------------------------------------------------

    #[test]
    fn the_fixture_holds_the_54_paths_and_66_operations_the_app_calls() {
        let spec = spec();
        let paths = spec.document()["paths"].as_object().expect("paths object");
        assert_eq!(paths.len(), 54);
        let operations = spec.operations();
        assert_eq!(operations.len(), 66);
        assert!(operations.contains(&(
            "POST".to_string(),
            "/repos/{owner}/{repo}/check-runs".to_string(),
            "checks/create".to_string()
        )));
        // Parsed once per process.
        assert!(std::ptr::eq(Spec::github(), Spec::github()));
    }

    #[test]
    fn load_reads_a_spec_from_a_path() {
        let spec = Spec::load(&Spec::fixture_path());
        assert_eq!(spec.operations().len(), 66);
    }

    #[test]
    fn find_matches_templates_and_extracts_path_parameters() {
        let op = spec().find("post", "/repos/acme/app/issues/12/comments").expect("issue comment route");
        assert_eq!(op.operation_id, "issues/create-comment");
        assert_eq!(op.method, "POST");
        assert_eq!(op.template, "/repos/{owner}/{repo}/issues/{issue_number}/comments");
        let expected: BTreeMap<String, String> =
            [("owner", "acme"), ("repo", "app"), ("issue_number", "12")].map(|(k, v)| (k.into(), v.into())).into();
        assert_eq!(op.path_params, expected);

        let op = spec().find("GET", "/repos/acme/app/issues/comments/7").expect("comment route");
        assert_eq!(op.operation_id, "issues/get-comment");
        assert_eq!(op.path_params["comment_id"], "7");

        assert_eq!(spec().find("GET", "/repos/acme/app/nope/1"), None);
        assert_eq!(spec().find("GET", "/repos/acme/app/issues/12/"), None, "trailing slash");
        assert_eq!(spec().find("GET", "repos/acme/app"), None, "no leading slash");
    }

    #[test]
    fn literal_segments_win_over_templated_ones() {
        let spec = mini_spec();
        assert_eq!(spec.find("GET", "/things/mine").expect("mine").operation_id, "things/mine");
        let op = spec.find("GET", "/things/other").expect("by id");
        assert_eq!(op.operation_id, "things/get");
        assert_eq!(op.path_params["id"], "other");
    }

    #[test]
    fn file_paths_and_git_refs_may_span_several_segments() {
        let op = accepted("GET", "/repos/o/r/contents/docs/deploy/policy.yml", &[("ref", "main")], None);
        assert_eq!(op.operation_id, "repos/get-content");
        assert_eq!(op.path_params["path"], "docs/deploy/policy.yml");

        let op = accepted("GET", "/repos/o/r/commits/heads/release/1.2/check-runs", &[("check_name", "ci")], None);
        assert_eq!(op.operation_id, "checks/list-for-ref");
        assert_eq!(op.path_params["ref"], "heads/release/1.2");

        let op = accepted("GET", "/repos/o/r/commits/0123abc/status", &[], None);
        assert_eq!(op.operation_id, "repos/get-combined-status-for-ref");
        assert_eq!(op.path_params["ref"], "0123abc");
    }

    #[test]
    fn path_parameters_are_percent_decoded() {
        let op = accepted("DELETE", "/repos/o/r/issues/3/labels/needs%20triage", &[], None);
        assert_eq!(op.operation_id, "issues/remove-label");
        assert_eq!(op.path_params["name"], "needs triage");
        let op = accepted("GET", "/repos/o/r/commits/heads%2Fmain/statuses", &[], None);
        assert_eq!(op.path_params["ref"], "heads/main");
        assert_eq!(percent_decode("a%2"), "a%2", "a truncated escape is kept");
        assert_eq!(percent_decode("%E2%9C%93"), "✓");
    }

    // ----- method, path and parameters -------------------------------------------------------

    #[test]
    fn an_unknown_path_is_rejected() {
        let problems = rejected("GET", "/repos/o/r/secret-scanning/alerts", &[], None);
        assert_eq!(problems.len(), 1);
        assert_mentions(&problems, "GET /repos/o/r/secret-scanning/alerts: no path in the spec matches");
    }

    #[test]
    fn a_wrong_method_is_rejected_naming_the_allowed_ones() {
        let problems = rejected("PATCH", "/repos/o/r/pulls/1", &[], Some(json!({"title": "x"})));
        assert_mentions(&problems, "PATCH /repos/o/r/pulls/1: method not allowed");
        assert_mentions(&problems, "/repos/{owner}/{repo}/pulls/{pull_number} allows GET");

        let problems = rejected("DELETE", "/repos/o/r/check-runs/5", &[], None);
        assert_mentions(&problems, "allows GET, PATCH");
    }

    #[test]
    fn a_query_string_in_the_path_is_a_harness_error() {
        let problems = rejected("GET", "/repos/o/r/pulls/1/files?page=2", &[], None);
        assert_mentions(&problems, "pass the query pairs separately");
    }

    #[test]
    fn integer_path_parameters_must_be_integers() {
        let problems = rejected("GET", "/repos/o/r/issues/abc", &[], None);
        assert_eq!(problems, vec![r#"path issue_number: "abc" is not an integer"#.to_string()]);

        let problems = rejected("PATCH", "/repos/o/r/check-runs/12x", &[], Some(json!({"status": "queued"})));
        assert_mentions(&problems, r#"path check_run_id: "12x" is not an integer"#);

        // `/issues/comments` without an id falls to `/issues/{issue_number}` and fails there.
        let problems = rejected("GET", "/repos/o/r/issues/comments", &[], None);
        assert_mentions(&problems, r#"path issue_number: "comments" is not an integer"#);
    }

    #[test]
    fn declared_query_parameters_are_accepted() {
        let op = accepted("GET", "/repos/o/r/pulls/1/files", &[("per_page", "100"), ("page", "2")], None);
        assert_eq!(op.operation_id, "pulls/list-files");
        accepted("GET", "/repos/o/r/actions/runs", &[("head_sha", "abc"), ("exclude_pull_requests", "true")], None);
        accepted("GET", "/repos/o/r/pulls", &[("state", "closed"), ("head", "o:branch"), ("direction", "asc")], None);
        accepted("GET", "/repos/o/r/issues/1/comments", &[("since", "2024-05-01T10:00:00Z")], None);
        accepted("GET", "/repos/o/r/deployments", &[("environment", "production"), ("sha", "abc")], None);
    }

    #[test]
    fn an_undeclared_query_parameter_is_rejected() {
        let problems = rejected("GET", "/repos/o/r/pulls/1/files", &[("per_pag", "100")], None);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_mentions(&problems, "query per_pag: unknown parameter for pulls/list-files (known: page, per_page)");
        assert_mentions(&problems, r#"did you mean "per_page"?"#);

        let problems = rejected("GET", "/repos/o/r/pulls/1", &[("page", "1")], None);
        assert_mentions(&problems, "query page: unknown parameter for pulls/get (known: none)");
    }

    #[test]
    fn query_values_must_fit_their_schema() {
        let problems = rejected("GET", "/repos/o/r/pulls/1/files", &[("per_page", "lots")], None);
        assert_eq!(problems, vec![r#"query per_page: "lots" is not an integer"#.to_string()]);

        let problems = rejected("GET", "/repos/o/r/pulls", &[("state", "merged")], None);
        assert_eq!(problems, vec![r#"query state: "merged" is not one of ["open","closed","all"]"#.to_string()]);

        let problems = rejected("GET", "/repos/o/r/actions/runs", &[("exclude_pull_requests", "yes")], None);
        assert_mentions(&problems, r#"query exclude_pull_requests: "yes" is not a boolean"#);

        let problems = rejected("GET", "/repos/o/r/issues/1/comments", &[("since", "yesterday")], None);
        assert_mentions(&problems, r#"query since: "yesterday" is not an RFC 3339 date-time"#);

        let problems = rejected("GET", "/repos/o/r/pulls/1/files", &[("page", "1"), ("page", "2")], None);
        assert_mentions(&problems, "query page: given 2 times");
    }

    #[test]
    fn array_and_required_query_parameters() {
        let spec = mini_spec();
        let query = |q: &[(&str, &str)]| pairs(q);
        let op =
            spec.validate("GET", "/things/a/parts", &query(&[("kind", "x"), ("tags", "1,2"), ("tags", "3")]), None);
        assert_eq!(op.expect("array query accepted").operation_id, "things/parts");

        let problems = spec.validate("GET", "/things/a/parts", &query(&[("tags", "1,b")]), None).unwrap_err();
        assert_mentions(&problems, r#"query tags: "b" is not an integer"#);
        assert_mentions(&problems, "query kind: required parameter missing");
    }

    // ----- request bodies ---------------------------------------------------------------------

    #[test]
    fn issue_comment_body() {
        accepted("POST", "/repos/o/r/issues/1/comments", &[], Some(json!({"body": "x"})));

        let problems = rejected("POST", "/repos/o/r/issues/1/comments", &[], Some(json!({"bdy": "x"})));
        assert_eq!(
            problems,
            vec![
                "body/body: missing required key".to_string(),
                r#"body/bdy: unknown key (known: body); did you mean "body"?"#.to_string(),
            ]
        );

        let problems = rejected("POST", "/repos/o/r/issues/1/comments", &[], Some(json!({"body": 5})));
        assert_eq!(problems, vec!["body/body: expected string, got integer 5".to_string()]);

        let problems = rejected("POST", "/repos/o/r/issues/1/comments", &[], None);
        assert_eq!(problems, vec!["body: required request body missing for issues/create-comment".to_string()]);

        let problems = rejected("POST", "/repos/o/r/issues/1/comments", &[], Some(json!(["x"])));
        assert_mentions(&problems, r#"body: expected object, got array ["x"]"#);
    }

    #[test]
    fn check_run_creation() {
        let body = json!({
            "name": "n", "head_sha": "abc", "status": "completed", "conclusion": "success",
            "output": {"title": "t", "summary": "s"}
        });
        let op = accepted("POST", "/repos/o/r/check-runs", &[], Some(body));
        assert_eq!(op.operation_id, "checks/create");

        let body = json!({
            "name": "n", "head_sha": "abc", "status": "completed", "conclusion": "success",
            "output": {"title": "t", "summery": "s"}
        });
        let problems = rejected("POST", "/repos/o/r/check-runs", &[], Some(body));
        assert_eq!(
            problems,
            vec![
                "body/output/summary: missing required key".to_string(),
                r#"body/output/summery: unknown key (known: annotations, images, summary, text, title); did you mean "summary"?"#
                    .to_string(),
            ]
        );
    }

    #[test]
    fn check_run_creation_details() {
        let annotation =
            json!({"path": "a.rs", "start_line": 1, "end_line": 2, "annotation_level": "failure", "message": "m"});
        let body = json!({
            "name": "n", "head_sha": "abc", "started_at": "2024-05-01T10:00:00.123+02:00",
            "output": {"title": "t", "summary": "s", "annotations": [annotation]},
            "actions": [{"label": "Retry", "description": "Run it again", "identifier": "retry"}]
        });
        accepted("POST", "/repos/o/r/check-runs", &[], Some(body));

        let body = json!({
            "name": "n", "head_sha": "abc", "status": "done", "started_at": "2024-05-01 10:00:00",
            "output": {"title": "t", "summary": "x".repeat(65_536),
                       "annotations": vec![annotation.clone(); 51]},
            "actions": [{"label": "a label longer than twenty", "description": "d", "identifier": "i"}]
        });
        let problems = rejected("POST", "/repos/o/r/check-runs", &[], Some(body));
        assert_mentions(&problems, r#"body/status: "done" is not one of ["queued","in_progress","completed"]"#);
        assert_mentions(&problems, r#"body/started_at: "2024-05-01 10:00:00" is not an RFC 3339 date-time"#);
        assert_mentions(&problems, "body/output/summary: string of 65536 characters, longer than maxLength 65535");
        assert_mentions(&problems, "body/output/annotations: 51 items, more than maxItems 50");
        assert_mentions(&problems, "body/actions/0/label: string of 26 characters, longer than maxLength 20");
        assert_eq!(problems.len(), 5, "{problems:#?}");

        let body = json!({"name": "n", "head_sha": "abc",
                          "output": {"title": "t", "summary": "s", "annotations": [{"path": "a.rs", "start_line": 1.5}]}});
        let problems = rejected("POST", "/repos/o/r/check-runs", &[], Some(body));
        assert_mentions(&problems, "body/output/annotations/0/start_line: expected integer, got number 1.5");
        assert_mentions(&problems, "body/output/annotations/0/annotation_level: missing required key");
    }

    #[test]
    fn check_run_update() {
        let path = "/repos/o/r/check-runs/42";
        let op = accepted("PATCH", path, &[], Some(json!({"status": "in_progress"})));
        assert_eq!(op.operation_id, "checks/update");
        assert_eq!(op.path_params["check_run_id"], "42");
        accepted(
            "PATCH",
            path,
            &[],
            Some(json!({"status": "completed", "conclusion": "failure", "completed_at": "2024-05-01T10:00:00Z",
                        "output": {"title": "CI failed", "summary": "2 jobs failed", "text": "details"}})),
        );
        // Without status: the spec's `anyOf` accepts it (no status means neither enum is violated).
        accepted("PATCH", path, &[], Some(json!({"conclusion": "success"})));

        // The spec's `anyOf`: a completed check run needs a conclusion.
        let problems = rejected("PATCH", path, &[], Some(json!({"status": "completed"})));
        assert_mentions(&problems, "body: matches none of the 2 anyOf alternatives");
        assert_mentions(&problems, "body/conclusion: missing required key");

        // The unknown-key pass also covers the keys that only the anyOf parts mention.
        let problems = rejected("PATCH", path, &[], Some(json!({"status": "completed", "conclsion": "success"})));
        assert_mentions(&problems, r#"body/conclsion: unknown key (known: "#);
        assert_mentions(&problems, r#"did you mean "conclusion"?"#);

        let problems = rejected("PATCH", path, &[], Some(json!({"output": {"title": "t"}})));
        assert_eq!(problems, vec!["body/output/summary: missing required key".to_string()]);
    }

    #[test]
    fn installation_token_body_is_optional() {
        let op = accepted("POST", "/app/installations/1/access_tokens", &[], None);
        assert_eq!(op.operation_id, "apps/create-installation-access-token");
        accepted("POST", "/app/installations/1/access_tokens", &[], Some(Value::Null));
        accepted(
            "POST",
            "/app/installations/1/access_tokens",
            &[],
            Some(json!({"repository_ids": [1, 2.0], "permissions": {"checks": "write", "issues": "read"}})),
        );

        let problems = rejected(
            "POST",
            "/app/installations/1/access_tokens",
            &[],
            Some(json!({"repository_ids": [1.5], "permissions": {"checks": "admin", "chekcs": "write"}})),
        );
        assert_mentions(&problems, "body/repository_ids/0: expected integer, got number 1.5");
        assert_mentions(&problems, r#"body/permissions/checks: "admin" is not one of ["read","write"]"#);
        assert_mentions(&problems, r#"body/permissions/chekcs: unknown key"#);
    }

    #[test]
    fn operations_without_a_request_body_take_none() {
        accepted("POST", "/app/hook/deliveries/9/attempts", &[], None);
        accepted("POST", "/app/hook/deliveries/9/attempts", &[], Some(Value::Null));
        let problems = rejected("POST", "/app/hook/deliveries/9/attempts", &[], Some(json!({"retry": true})));
        assert_eq!(
            problems,
            vec![
                r#"body: apps/redeliver-webhook-delivery takes no request body, but got object {"retry":true}"#
                    .to_string()
            ]
        );
    }

    #[test]
    fn deployment_protection_rule_review() {
        let path = "/repos/o/r/actions/runs/1/deployment_protection_rule";
        let op = accepted(
            "POST",
            path,
            &[],
            Some(json!({"environment_name": "production", "state": "approved", "comment": "ok"})),
        );
        assert_eq!(op.operation_id, "actions/review-custom-gates-for-run");
        accepted("POST", path, &[], Some(json!({"environment_name": "production", "state": "rejected"})));
        // The other anyOf alternative: a comment without a state.
        accepted("POST", path, &[], Some(json!({"environment_name": "production", "comment": "still running"})));

        // Plain JSON Schema would accept this through the "comment required" alternative, which
        // does not define `state`; the strict pass rejects it and points at the real mistake.
        let problems = rejected(
            "POST",
            path,
            &[],
            Some(json!({"environment_name": "production", "state": "approve", "comment": "ok"})),
        );
        assert_mentions(&problems, r#"body/state: "approve" is not one of ["approved","rejected"]"#);
        assert_mentions(
            &problems,
            "body: matches none of the 2 anyOf alternatives; closest is #2 (review-custom-gates-state-required)",
        );
        assert_eq!(problems.len(), 2, "{problems:#?}");

        let problems = rejected("POST", path, &[], Some(json!({"state": "approved"})));
        assert_mentions(&problems, "body/environment_name: missing required key");

        let problems = rejected("POST", path, &[], Some(json!({"environment_name": "production"})));
        assert_mentions(&problems, "body: matches none of the 2 anyOf alternatives");

        let problems = rejected("POST", path, &[], Some(json!("approved")));
        assert_eq!(
            problems,
            vec![
                r#"body: expected review-custom-gates-comment-required or review-custom-gates-state-required (anyOf), got string "approved""#
                    .to_string()
            ]
        );
    }

    #[test]
    fn nullable_fields_accept_null() {
        // `nullable: true` on plain types, and next to a `oneOf` (milestone, type).
        accepted(
            "PATCH",
            "/repos/o/r/issues/3",
            &[],
            Some(json!({"body": null, "milestone": null, "state_reason": null, "type": null, "assignee": null})),
        );
        accepted("POST", "/repos/o/r/issues", &[], Some(json!({"title": "t", "assignee": null, "milestone": 4})));

        // Not nullable on creation.
        let problems = rejected("POST", "/repos/o/r/issues", &[], Some(json!({"title": null})));
        assert_mentions(&problems, "body/title: expected string or integer (oneOf), got null");
        let problems = rejected("PATCH", "/repos/o/r/issues/3", &[], Some(json!({"state": null})));
        assert_eq!(problems, vec!["body/state: expected string, got null".to_string()]);
    }

    #[test]
    fn one_of_bodies_and_items() {
        let labels = "/repos/o/r/issues/3/labels";
        accepted("PUT", labels, &[], Some(json!({"labels": ["bug", "incident"]})));
        accepted("PUT", labels, &[], Some(json!({"labels": [{"name": "bug"}]})));
        accepted("POST", labels, &[], Some(json!({"labels": ["bug", {"name": "incident", "confidence": "high"}]})));

        let problems = rejected("PUT", labels, &[], Some(json!({"labels": []})));
        assert_mentions(&problems, "body/labels: 0 items, fewer than minItems 1");
        let problems = rejected("PUT", labels, &[], Some(json!({"lables": ["bug"]})));
        assert_mentions(&problems, r#"body/lables: unknown key (known: labels); did you mean "labels"?"#);

        let problems = rejected("POST", labels, &[], Some(json!({"labels": [{"nme": "bug"}]})));
        assert_mentions(&problems, "body/labels/0: matches none of the 2 oneOf alternatives; closest is #2 (object)");
        assert_mentions(&problems, "body/labels/0/name: missing required key");
        assert_mentions(&problems, "body/labels/0/nme: unknown key");

        let problems = rejected("POST", labels, &[], Some(json!({"labels": [7]})));
        assert_mentions(&problems, "body/labels/0: expected string or object (oneOf), got integer 7");
    }

    #[test]
    fn free_form_objects_take_any_key() {
        let path = "/repos/o/r/deployments";
        accepted("POST", path, &[], Some(json!({"ref": "main", "payload": {"anything": {"goes": [1]}}})));
        accepted("POST", path, &[], Some(json!({"ref": "main", "payload": "{}", "environment": "staging"})));
        let problems = rejected("POST", path, &[], Some(json!({"ref": "main", "enviroment": "staging"})));
        assert_mentions(&problems, r#"body/enviroment: unknown key"#);
    }

    #[test]
    fn other_bodies_the_app_sends() {
        accepted("POST", "/repos/o/r/issues/3/reactions", &[], Some(json!({"content": "+1"})));
        let problems = rejected("POST", "/repos/o/r/issues/3/reactions", &[], Some(json!({"content": "thumbsup"})));
        assert_mentions(&problems, r#"body/content: "thumbsup" is not one of ["+1","-1","laugh""#);
        accepted("POST", "/repos/o/r/issues/3/assignees", &[], Some(json!({"assignees": ["octocat"]})));
        accepted(
            "POST",
            "/repos/o/r/labels",
            &[],
            Some(json!({"name": "incident", "color": "d73a4a", "description": "d"})),
        );
        accepted(
            "POST",
            "/repos/o/r/deployments/5/statuses",
            &[],
            Some(json!({"state": "failure", "description": "gate failed", "environment": "production"})),
        );
        accepted("PATCH", "/repos/o/r/issues/comments/8", &[], Some(json!({"body": "edited"})));
        accepted("PATCH", "/repos/o/r/issues/3", &[], Some(json!({"state": "closed", "state_reason": "completed"})));
    }

    #[test]
    fn the_specs_own_request_examples_pass_the_strict_check() {
        let spec = spec();
        let mut failures = Vec::new();
        let mut checked = 0;
        for (method, template, id) in spec.operations() {
            let op = spec.operation_by_id(&id).expect("listed operation exists");
            let Some(request_body) = op.get("requestBody") else { continue };
            let media = json_media(spec.resolve(request_body).expect("request body resolves")).expect("json body");
            let schema = media.get("schema").expect("request schema");
            for (name, example) in media.get("examples").and_then(Value::as_object).into_iter().flatten() {
                let example = spec.resolve(example).expect("example resolves");
                let value = example.get("value").expect("example value");
                checked += 1;
                for problem in spec.validate_value_at(schema, value, true, "body") {
                    failures.push(format!("{method} {template} example {name}: {problem}"));
                }
            }
        }
        assert!(checked >= 17, "only {checked} request examples found");
        assert!(failures.is_empty(), "request examples failing the strict check:\n{}", failures.join("\n"));
    }

    // ----- responses and plain values ---------------------------------------------------------

    #[test]
    fn response_schemas_resolve() {
        let spec = spec();
        let check_run = spec.response_schema("checks/create", 201).expect("checks/create 201");
        assert_eq!(check_run["title"], "CheckRun");
        assert!(spec.response_schema("checks/create", 200).is_none(), "no 200 for checks/create");
        assert!(spec.response_schema("actions/review-custom-gates-for-run", 204).is_none(), "204 has no content");
        assert!(spec.response_schema("no/such-operation", 200).is_none());
        // A response given as a `$ref` into components/responses.
        let not_found = spec.response_schema("repos/get", 404).expect("repos/get 404");
        assert!(not_found.get("properties").is_some_and(|p| p.get("message").is_some()), "{not_found}");
        // Content offered as several media types: the JSON one is chosen.
        assert!(spec.response_schema("repos/get-content", 200).is_some());
        let token = spec.response_schema("apps/create-installation-access-token", 201).expect("token schema");
        let canned = json!({"token": "ghs_x", "expires_at": "2030-01-01T00:00:00Z"});
        assert_eq!(spec.validate_value(token, &canned, false), Vec::<String>::new());
        let problems = spec.validate_value(token, &json!({"token": 1}), false);
        assert_mentions(&problems, "/expires_at: missing required key");
        assert_mentions(&problems, "/token: expected string, got integer 1");

        // A `$ref` may point anywhere in the document, e.g. at one property of a schema.
        let started_at = json!({"$ref": "#/components/schemas/check-run/properties/started_at"});
        assert_eq!(spec.validate_value(&started_at, &Value::Null, false), Vec::<String>::new(), "nullable");
        assert_eq!(
            spec.validate_value(&started_at, &json!("soon"), false),
            vec![r#"/: "soon" is not an RFC 3339 date-time"#.to_string()]
        );
    }

    /// Places where GitHub's own response examples do not fit GitHub's own response schemas, as
    /// (operation, problem text). The validator is right about each; keep canned answers of the
    /// fake server in line with the schemas, not with these examples.
    const KNOWN_EXAMPLE_DEFECTS: &[(&str, &str)] = &[
        // The `accepted` response says `type: object` but its example is `null`.
        ("POST /app/hook/deliveries/{delivery_id}/attempts", "/: expected object, got null"),
        // The inlined installation schema says `account: allOf[simple-user, enterprise]` (the
        // `installation` component says anyOf): a user account cannot be both.
        ("GET /app/installations", "/0/account/"),
        // Keys the schemas require that the (older) examples lack.
        ("GET /repos/{owner}/{repo}", "language: missing required key"),
        ("GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs", "/jobs/0/created_at: missing required key"),
        (
            "GET /repos/{owner}/{repo}/actions/runs/{run_id}/attempts/{attempt_number}/jobs",
            "/jobs/0/created_at: missing required key",
        ),
        ("GET /repos/{owner}/{repo}/actions/runs/{run_id}/pending_deployments", "/0/reviewers/1/reviewer"),
        ("GET /repos/{owner}/{repo}/collaborators/{username}/permission", "/user/role_name: missing required key"),
        // The `rerun` answer's example is `null` where the schema says object (as `attempts` above).
        ("POST /repos/{owner}/{repo}/actions/runs/{run_id}/rerun", "/: expected object, got null"),
        // A commit's files in the example lack `sha` and `contents_url`, which the schema requires.
        ("GET /repos/{owner}/{repo}/commits/{ref}", "/files/0/sha: missing required key"),
        ("GET /repos/{owner}/{repo}/commits/{ref}", "/files/0/contents_url: missing required key"),
        ("GET /repos/{owner}/{repo}/commits/{commit_sha}/pulls", "/0/requested_teams/0/type: missing required key"),
        ("GET /repos/{owner}/{repo}/pulls", "/0/requested_teams/0/type: missing required key"),
        ("GET /repos/{owner}/{repo}/pulls/{pull_number}", "/requested_teams/0/type: missing required key"),
    ];

    #[test]
    fn the_specs_own_response_examples_fit_their_schemas() {
        let spec = spec();
        let mut unexpected = Vec::new();
        let mut known = 0;
        let mut checked = 0;
        for (method, template, id) in spec.operations() {
            let operation = format!("{method} {template}");
            let op = spec.operation_by_id(&id).expect("listed operation exists");
            for (status, response) in op["responses"].as_object().expect("responses object") {
                let Some(media) = json_media(spec.resolve(response).expect("response resolves")) else { continue };
                let Some(schema) = media.get("schema") else { continue };
                for (name, example) in media.get("examples").and_then(Value::as_object).into_iter().flatten() {
                    let example = spec.resolve(example).expect("example resolves");
                    let Some(value) = example.get("value") else { continue };
                    // Quirk: some examples' `value` is itself a `$ref` to a components/examples entry.
                    let value = match value.get("$ref") {
                        Some(_) => spec
                            .resolve(value)
                            .expect("example value resolves")
                            .get("value")
                            .expect("referenced example has a value"),
                        None => value,
                    };
                    checked += 1;
                    for problem in spec.validate_value(schema, value, false) {
                        if KNOWN_EXAMPLE_DEFECTS.iter().any(|(op, text)| *op == operation && problem.contains(text)) {
                            known += 1;
                        } else {
                            unexpected.push(format!("{operation} {status} example {name}: {problem}"));
                        }
                    }
                }
            }
        }
        assert!(checked >= 40, "only {checked} response examples found");
        assert!(known > 0, "the known defects of the spec's examples were not detected");
        assert!(unexpected.is_empty(), "response examples not fitting their schema:\n{}", unexpected.join("\n"));
    }

    #[test]
    fn validate_value_rules() {
        let spec = spec();
        let schema = json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 1, "maximum": 10},
                "x": {"type": "number"},
                "s": {"type": "string", "minLength": 2},
                "a/b": {"type": "boolean"},
                "list": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/simple-user"}}
            },
            "additionalProperties": false
        });
        assert!(spec.validate_value(&schema, &json!({"n": 3.0, "x": 1.5, "s": "ab", "a/b": true}), false).is_empty());
        let problems = spec.validate_value(&schema, &json!({"n": 11, "s": "a", "a/b": 1, "list": [], "z": 0}), false);
        assert_eq!(
            problems,
            vec![
                "/a~1b: expected boolean, got integer 1".to_string(),
                "/list: 0 items, fewer than minItems 1".to_string(),
                "/n: 11 is above the maximum 10".to_string(),
                "/s: string of 1 characters, shorter than minLength 2".to_string(),
                "/z: unknown key (the schema allows no others) (known: a/b, list, n, s, x)".to_string(),
            ]
        );
        let problems = spec.validate_value(&schema, &json!({"list": [{"login": "octocat"}]}), false);
        assert_mentions(&problems, "/list/0/id: missing required key");
        assert_eq!(
            spec.validate_value(&json!({"type": "string"}), &json!(1), false),
            vec!["/: expected string, got integer 1"]
        );

        // additionalProperties as a schema.
        let map = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(spec.validate_value(&map, &json!({"k": 1}), true), vec!["/k: expected string, got integer 1"]);
        // Without properties, an object is free-form even in strict mode.
        assert!(spec.validate_value(&json!({"type": "object"}), &json!({"k": 1}), true).is_empty());
    }

    #[test]
    fn strict_unknown_keys_only_when_asked() {
        let spec = spec();
        let schema = spec.request_schema("issues/create-comment").expect("comment schema");
        assert!(spec.validate_value(schema, &json!({"body": "x", "extra": 1}), false).is_empty());
        assert_eq!(
            spec.validate_value(schema, &json!({"body": "x", "extra": 1}), true),
            vec!["/extra: unknown key (known: body)"]
        );
    }

    #[test]
    fn the_strict_pass_over_all_of_takes_the_union_of_the_parts() {
        let spec = mini_spec();
        let schema = json!({"allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"b": {"type": "integer"}}, "required": ["b"]}
        ]});
        assert_eq!(spec.validate_value(&schema, &json!({"a": "x", "b": 1}), true), Vec::<String>::new());
        assert_eq!(
            spec.validate_value(&schema, &json!({"a": "x", "b": "1", "c": 2}), true),
            vec!["/c: unknown key (known: a, b)", "/b: expected integer, got string \"1\""]
        );
        // An allOf part open to any key opens the whole object.
        let open = json!({"allOf": [{"properties": {"a": {}}}, {"type": "object", "additionalProperties": true}]});
        assert_eq!(spec.validate_value(&open, &json!({"z": 1}), true), Vec::<String>::new());
    }

    #[test]
    fn cyclic_refs_do_not_recurse_forever() {
        let spec = mini_spec();
        let problems = spec.validate_value(&json!({"$ref": "#/components/schemas/loop"}), &json!(1), false);
        assert_mentions(&problems, "chained $refs (cycle?)");
        let problems = spec.validate_value(&json!({"$ref": "#/components/schemas/self-all-of"}), &json!({}), true);
        assert_mentions(&problems, "(a $ref cycle?)");
        let problems = spec.validate_value(&json!({"$ref": "#/components/schemas/missing"}), &json!(1), false);
        assert_eq!(problems, vec![r##"/: schema error: unresolvable $ref "#/components/schemas/missing""##]);

        // A recursive (but well-founded) schema validates nested values.
        let node = json!({"$ref": "#/components/schemas/node"});
        let value = json!({"name": "a", "child": {"name": "b", "child": {"name": 3, "chld": {}}}});
        assert_eq!(
            spec.validate_value(&node, &value, true),
            vec![
                r#"/child/child/chld: unknown key (known: child, name); did you mean "child"?"#.to_string(),
                "/child/child/name: expected string, got integer 3".to_string(),
            ]
        );
    }

    #[test]
    fn rfc3339_shapes() {
        for good in
            ["2024-05-01T10:00:00Z", "2024-05-01t10:00:00.5z", "2024-12-31T23:59:60+14:00", "2024-01-01T00:00:00-05:30"]
        {
            assert!(is_rfc3339(good), "{good}");
        }
        for bad in [
            "2024-05-01",
            "2024-05-01 10:00:00Z",
            "2024-13-01T10:00:00Z",
            "2024-05-01T10:00:00",
            "2024-05-01T10:00:00.Z",
            "1714557600",
            "",
        ] {
            assert!(!is_rfc3339(bad), "{bad}");
        }
    }

    #[test]
    fn edit_distance_and_suggestions() {
        assert_eq!(edit_distance("summery", "summary"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(did_you_mean("zzz", ["summary"].into_iter()), "");
    }
}
