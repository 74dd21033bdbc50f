//! `chatd doctor`: checks what can be checked from this machine before going live, and says in
//! plain words what to fix.
//!
//! | check | how |
//! |---|---|
//! | the listen ports are free and bindable | bind them (and drop them) |
//! | the certificate and key are readable and match | load them as `run` would |
//! | the certificate covers the domain and is not about to expire | read its names and `notAfter` |
//! | the domain's A/AAAA records point here | resolve it, then try to bind each address: only this machine's own addresses can be bound |
//! | the ACME webroot is readable | list it |
//! | with `--domain` (ACME): the data directory is writable, the challenge can reach chatd | write a file there; compare ports |
//! | with `--redis`: Redis answers, and keeps an append-only file | `INFO server`, `CONFIG GET appendonly` |

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::acme::{AcmeConfig, Challenge};
use crate::config::{Config, TlsFiles};
use crate::x509::{dns_names, validity};

/// One finding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Checked and fine.
    Ok(String),
    /// Must be fixed before going live; says how.
    Problem(String),
    /// Could not be checked from here; says why.
    Note(String),
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Ok(s) => write!(f, "ok       {s}"),
            Finding::Problem(s) => write!(f, "PROBLEM  {s}"),
            Finding::Note(s) => write!(f, "note     {s}"),
        }
    }
}

/// Tries to bind `addr` the way chatd will.
pub fn check_port(addr: SocketAddr) -> Finding {
    match std::net::TcpListener::bind(addr) {
        Ok(_) => Finding::Ok(format!("{addr} is free")),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Finding::Problem(format!(
            "{addr} is in use by another program (another chatd, nginx, apache?): stop it or choose another --listen"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Finding::Problem(format!(
            "{addr}: ports below 1024 need root or CAP_NET_BIND_SERVICE (deploy/chatd.service grants it)"
        )),
        Err(e) => Finding::Problem(format!("{addr}: cannot listen: {e}")),
    }
}

/// Reads the pair, checks names and expiry.
pub fn check_certificate(config: &Config, domain: Option<&str>, now: SystemTime) -> Vec<Finding> {
    let stored = config.acme.as_ref().map(|acme| {
        let dir = crate::acme::Store::path(&acme.data_dir, &acme.directory);
        TlsFiles { cert: dir.join("certificate.pem"), key: dir.join("key.pem") }
    });
    let files = match (&config.tls, &stored) {
        (Some(files), _) => files,
        (None, Some(files)) if files.cert.exists() => files,
        (None, Some(_)) => {
            return vec![Finding::Note("no certificate obtained yet: chatd will order one by ACME at start".into())]
        }
        (None, None) => {
            return vec![Finding::Note(
                "no --cert/--key or --domain given: chatd would serve plain http (browsers on https pages need wss)"
                    .into(),
            )]
        }
    };
    let provider = rustls::crypto::ring::default_provider();
    let pair = match crate::tls::load_pair(files, &provider) {
        Ok(pair) => pair,
        Err(e) => return vec![Finding::Problem(format!("{e}"))],
    };
    let mut out = vec![Finding::Ok(format!("{} and {} load and match", files.cert.display(), files.key.display()))];
    let Some(leaf) = pair.cert.first() else { return out };
    let (renew, check) = if config.tls.is_none() {
        ("chatd renews it by ACME: look for \"ACME order\" in its log", "chatd's log shows each ACME order")
    } else {
        ("renew it (certbot renew) and reload chatd", "certbot renew --dry-run")
    };
    match validity(leaf) {
        Some((_, expiry)) => {
            let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
            let days = left.as_secs() / 86_400;
            if left.is_zero() {
                out.push(Finding::Problem(format!("the certificate has expired: {renew}")));
            } else if days < 10 {
                out.push(Finding::Problem(format!(
                    "the certificate expires in {days} days: check that renewal works ({check})"
                )));
            } else {
                out.push(Finding::Ok(format!("the certificate is valid for {days} more days")));
            }
        }
        None => out.push(Finding::Note("could not read the certificate's expiry".into())),
    }
    if let Some(domain) = domain {
        let names = dns_names(leaf);
        let covered = names.iter().any(|n| n.eq_ignore_ascii_case(domain) || wildcard_matches(n, domain));
        if covered {
            out.push(Finding::Ok(format!("the certificate covers {domain}")));
        } else {
            out.push(Finding::Problem(format!(
                "the certificate is for {names:?}, not {domain}: browsers will refuse it"
            )));
        }
    }
    out
}

fn wildcard_matches(pattern: &str, name: &str) -> bool {
    match (pattern.strip_prefix("*."), name.split_once('.')) {
        (Some(suffix), Some((_, rest))) => suffix.eq_ignore_ascii_case(rest),
        _ => false,
    }
}

/// Resolves `domain` and checks that each address belongs to this machine.
pub async fn check_dns(domain: &str) -> Vec<Finding> {
    let addrs: Vec<IpAddr> = match tokio::net::lookup_host((domain, 443)).await {
        Ok(found) => {
            let mut ips: Vec<IpAddr> = found.map(|a| a.ip()).collect();
            ips.sort();
            ips.dedup();
            ips
        }
        Err(e) => {
            return vec![Finding::Problem(format!(
                "{domain} does not resolve ({e}): create an A record (and AAAA only if this machine has IPv6) pointing here"
            ))]
        }
    };
    let mut out = Vec::new();
    for ip in addrs {
        let family = if ip.is_ipv4() { "A" } else { "AAAA" };
        // Only an address configured on this machine can be bound.
        if std::net::TcpListener::bind((ip, 0)).is_ok() {
            out.push(Finding::Ok(format!("{family} {domain} -> {ip} is an address of this machine")));
        } else {
            out.push(Finding::Problem(format!(
                "{family} {domain} -> {ip} is not an address of this machine: fix or remove that record \
                 (Let's Encrypt tries AAAA first). If this machine is behind NAT (a cloud 'elastic' or \
                 floating IP), this check can't tell: make sure the provider forwards {ip} here"
            )));
        }
    }
    out
}

/// Checks that chatd can keep its ACME account and certificates in `dir`.
pub fn check_data_dir(dir: &Path) -> Finding {
    if !dir.exists() {
        let parent = dir.ancestors().skip(1).find(|p| p.exists());
        let writable_dir = |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.is_dir() && !m.permissions().readonly());
        return match parent {
            Some(p) if writable_dir(p) => Finding::Ok(format!("{} will be created (mode 0700)", dir.display())),
            _ => Finding::Problem(format!(
                "{} does not exist and cannot be created: create it, owned by the user chatd runs as",
                dir.display()
            )),
        };
    }
    let probe = dir.join(".chatd-doctor");
    match std::fs::write(&probe, b"") {
        Ok(()) => {
            let _ = std::fs::remove_file(probe);
            Finding::Ok(format!("data directory {} is writable", dir.display()))
        }
        Err(e) => Finding::Problem(format!(
            "data directory {} is not writable ({e}): chown it to the user chatd runs as \
             (systemd's StateDirectory= does this)",
            dir.display()
        )),
    }
}

/// Checks that the ACME CA's validation will reach chatd.
pub fn check_challenge(config: &Config, acme: &AcmeConfig, listen: SocketAddr) -> Finding {
    match acme.challenge {
        Challenge::TlsAlpn01 if listen.port() == 443 => {
            Finding::Ok("tls-alpn-01 will be answered on port 443, where the CA connects".into())
        }
        Challenge::TlsAlpn01 => Finding::Note(format!(
            "the CA validates tls-alpn-01 on port 443 but chatd listens on {}: forward 443 here, \
             or use --listen 0.0.0.0:443",
            listen.port()
        )),
        Challenge::Http01 => match config.http_redirect {
            Some(addr) if addr.port() == 80 => {
                Finding::Ok("http-01 will be answered on port 80, where the CA connects".into())
            }
            Some(addr) => Finding::Note(format!(
                "the CA validates http-01 on port 80 but --http-redirect is port {}: forward 80 there",
                addr.port()
            )),
            None => Finding::Problem("--acme-challenge http-01 needs --http-redirect 0.0.0.0:80".into()),
        },
    }
}

/// With `--redis`: Redis answers, and what a Redis restart would keep.
pub async fn check_redis(url: &str) -> Vec<Finding> {
    let client = match crate::cluster::check_url(url) {
        Ok(client) => client,
        Err(e) => return vec![Finding::Problem(e.to_string())],
    };
    let url = crate::cluster::redacted(url);
    let asked = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        let info: String = redis::cmd("INFO").arg("server").query_async(&mut conn).await?;
        let aof: Vec<String> = redis::cmd("CONFIG").arg("GET").arg("appendonly").query_async(&mut conn).await?;
        redis::RedisResult::Ok((info, aof))
    };
    let (info, aof) = match tokio::time::timeout(Duration::from_secs(3), asked).await {
        Ok(Ok(answers)) => answers,
        Ok(Err(e)) => return vec![Finding::Problem(format!("Redis at {url}: {e} (is redis-server running there?)"))],
        Err(_) => return vec![Finding::Problem(format!("Redis at {url} did not answer within 3 s"))],
    };
    let version = info.lines().find_map(|l| l.strip_prefix("redis_version:")).unwrap_or("unknown version");
    let mut out = vec![Finding::Ok(format!("Redis at {url} answers (version {})", version.trim()))];
    match aof.get(1).map(String::as_str) {
        Some("yes") => out.push(Finding::Ok("Redis keeps an append-only file: history survives its restarts".into())),
        Some(_) => out.push(Finding::Note(
            "Redis runs without appendonly: a Redis crash loses what came after its last snapshot (chatd then skips \
             numbers rather than reuse them); set appendonly yes"
                .into(),
        )),
        None => out.push(Finding::Note("Redis did not say whether appendonly is on (CONFIG is restricted)".into())),
    }
    out
}

/// Runs every check for `config` and `domain`.
pub async fn run(config: &Config, listen: SocketAddr, domain: Option<&str>) -> Vec<Finding> {
    let mut out = vec![check_port(listen)];
    if let Some(addr) = config.http_redirect {
        out.push(check_port(addr));
    } else if config.tls.is_some() {
        out.push(Finding::Note(
            "no --http-redirect: plain http requests and certbot's http-01 renewals won't reach chatd".into(),
        ));
    }
    if let Some(dir) = config.data_dir.as_ref().or(config.acme.as_ref().map(|a| &a.data_dir)) {
        out.push(check_data_dir(dir));
    }
    if let Some(acme) = &config.acme {
        out.push(check_challenge(config, acme, listen));
    }
    if let Some(cluster) = &config.cluster {
        out.extend(check_redis(&cluster.url).await);
    }
    out.extend(check_certificate(config, domain, SystemTime::now()));
    if let Some(root) = &config.acme_webroot {
        match std::fs::read_dir(root) {
            Ok(_) => out.push(Finding::Ok(format!("ACME webroot {} is readable", root.display()))),
            Err(e) => out.push(Finding::Problem(format!("ACME webroot {}: {e}", root.display()))),
        }
    }
    match domain {
        Some(domain) => out.extend(check_dns(domain).await),
        None => out.push(Finding::Note("no --domain: DNS not checked".into())),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_matches("*.example.com", "chat.example.com"));
        assert!(!wildcard_matches("*.example.com", "example.com"));
        assert!(!wildcard_matches("*.example.com", "a.b.example.com"));
    }

    #[test]
    fn a_port_in_use_is_a_problem() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        assert!(matches!(check_port(addr), Finding::Problem(p) if p.contains("in use")));
        drop(taken);
        assert!(matches!(check_port(addr), Finding::Ok(_)));
    }

    #[tokio::test]
    async fn dns_records_must_point_here() {
        let local = check_dns("127.0.0.1").await;
        assert!(matches!(&local[..], [Finding::Ok(s)] if s.contains("address of this machine")), "{local:?}");
        // TEST-NET-1 (RFC 5737) is never configured on this machine.
        let remote = check_dns("192.0.2.1").await;
        assert!(
            matches!(&remote[..], [Finding::Problem(s)] if s.contains("not an address of this machine")),
            "{remote:?}"
        );
        let missing = check_dns("no-such-host.invalid").await;
        assert!(matches!(&missing[..], [Finding::Problem(s)] if s.contains("does not resolve")), "{missing:?}");
    }
}
