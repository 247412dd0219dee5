//! A signed delivery to the App's `/webhook`, as GitHub sends it: shared by the bench programs
//! that drive the App (`approve_latency`, `storm` in process; `soak` over two processes).

/// Posts `body` as delivery `id` of `event`, signed with `secret`: the answer's status, or 0 when
/// there was none.
#[allow(dead_code)]
pub async fn deliver(http: &reqwest::Client, url: &str, secret: &str, event: &str, id: &str, body: &str) -> u16 {
    http.post(format!("{url}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", shipgate::github::signature::sign(secret, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// As [`deliver`], with the answer's body (the intake says `stored`, `duplicate` or `replay`); an
/// error when no answer came (a refused or reset connection, a time-out).
#[allow(dead_code)]
pub async fn deliver_answer(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    event: &str,
    id: &str,
    body: &str,
) -> Result<(u16, String), reqwest::Error> {
    let r = http
        .post(format!("{url}/webhook"))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-hub-signature-256", shipgate::github::signature::sign(secret, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await?;
    let status = r.status().as_u16();
    Ok((status, r.text().await?))
}
