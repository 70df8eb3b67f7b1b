//! The HTTP check of a running Odoo: an exit code proves nothing (real Odoo returns 0 with its
//! port taken, stays alive and serves nothing, and `/web/health` says "pass" on a read-only
//! standby), so a started instance is checked the way its users reach it: the login page
//! answers 200 and an attachment downloads with the bytes its checksum names.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::error::{InstanceError, Result};

/// One HTTP/1.0 answer.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// `GET path` on `addr:port` (HTTP/1.0, no redirects followed), within `limit`.
pub async fn get(addr: &str, port: u16, path: &str, limit: Duration) -> std::io::Result<Response> {
    let work = async {
        let mut s = tokio::net::TcpStream::connect((addr, port)).await?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {addr}:{port}\r\nUser-Agent: odoo-standby\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await?;
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("no end of headers in the answer"))?;
        let head = String::from_utf8_lossy(&raw[..split]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:.60}")))?;
        Ok(Response {
            status,
            body: raw[split + 4..].to_vec(),
        })
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time"))?
}

/// What [`check_serving`] saw.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Serving {
    /// Seconds until the login page first answered 200.
    pub login_after_seconds: f64,
    /// The attachment that was downloaded and matched its checksum, if one was asked for.
    pub attachment: Option<i64>,
    /// Without one: the asset bundle the login page links to, which Odoo served (building
    /// it when its attachment is gone).
    pub asset: Option<String>,
}

/// The `/web/assets/...` links of a page.
fn asset_links(page: &str) -> Vec<String> {
    page.match_indices("/web/assets/")
        .filter_map(|(i, _)| {
            let rest = &page[i..];
            let end = rest.find(['"', '\'', ' ', '>'])?;
            Some(rest[..end].to_owned())
        })
        .collect()
}

/// Waits (up to `wait`) until `GET /web/login?db=DB` answers 200 on `addr:port`, then, when
/// `attachment` is given (`id`, SHA-1 hex of its content), downloads `/web/content/ID` and
/// checks its bytes; without one, downloads the first asset bundle the login page links to.
pub async fn check_serving(
    addr: &str,
    port: u16,
    db: &str,
    attachment: Option<(i64, String)>,
    wait: Duration,
) -> Result<Serving> {
    use sha1::Digest;
    let start = Instant::now();
    let login = format!("/web/login?db={db}");
    let url = |p: &str| format!("http://{addr}:{port}{p}");
    let page = loop {
        let last = match get(addr, port, &login, Duration::from_secs(10)).await {
            Ok(r) if r.status == 200 => break r.body,
            Ok(r) => format!("status {}", r.status),
            Err(e) => e.to_string(),
        };
        if start.elapsed() > wait {
            return Err(InstanceError::NotServing {
                url: url(&login),
                problem: format!(
                    "{last} after {} s (a taken port leaves Odoo running without HTTP: see its journal)",
                    wait.as_secs()
                ),
            });
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let login_after_seconds = start.elapsed().as_secs_f64();
    let Some((id, checksum)) = attachment else {
        let links = asset_links(&String::from_utf8_lossy(&page));
        let Some(link) = links.first() else {
            return Ok(Serving {
                login_after_seconds,
                attachment: None,
                asset: None,
            });
        };
        let r = get(addr, port, link, Duration::from_secs(60))
            .await
            .map_err(|e| InstanceError::NotServing {
                url: url(link),
                problem: e.to_string(),
            })?;
        if r.status != 200 || r.body.is_empty() {
            return Err(InstanceError::NotServing {
                url: url(link),
                problem: format!("status {}, {} bytes", r.status, r.body.len()),
            });
        }
        return Ok(Serving {
            login_after_seconds,
            attachment: None,
            asset: Some(link.clone()),
        });
    };
    let path = format!("/web/content/{id}?db={db}");
    let r = get(addr, port, &path, Duration::from_secs(30))
        .await
        .map_err(|e| InstanceError::NotServing {
            url: url(&path),
            problem: e.to_string(),
        })?;
    let got = hex::encode(sha1::Sha1::digest(&r.body));
    if r.status != 200 || got != checksum {
        return Err(InstanceError::NotServing {
            url: url(&path),
            problem: format!(
                "status {}, {} bytes with SHA-1 {got}, expected {checksum}",
                r.status,
                r.body.len()
            ),
        });
    }
    Ok(Serving {
        login_after_seconds,
        attachment: Some(id),
        asset: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_links_of_a_login_page() {
        let page = r#"<link type="text/css" rel="stylesheet" href="/web/assets/1/b69b923/web.assets_frontend.min.css"/><script src="/web/assets/1/abc/web.assets_frontend_minimal.min.js"></script>"#;
        assert_eq!(
            asset_links(page),
            vec![
                "/web/assets/1/b69b923/web.assets_frontend.min.css",
                "/web/assets/1/abc/web.assets_frontend_minimal.min.js"
            ]
        );
        assert!(asset_links("<html></html>").is_empty());
    }
}
