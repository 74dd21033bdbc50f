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

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::config::Config;

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
    let Some(files) = &config.tls else {
        return vec![Finding::Note(
            "no --cert/--key given: chatd would serve plain http (browsers on https pages need wss)".into(),
        )];
    };
    let provider = rustls::crypto::ring::default_provider();
    let pair = match crate::tls::load_pair(files, &provider) {
        Ok(pair) => pair,
        Err(e) => return vec![Finding::Problem(format!("{e}"))],
    };
    let mut out = vec![Finding::Ok(format!("{} and {} load and match", files.cert.display(), files.key.display()))];
    let Some(leaf) = pair.cert.first() else { return out };
    match not_after(leaf) {
        Some(expiry) => {
            let left = expiry.duration_since(now).unwrap_or(Duration::ZERO);
            let days = left.as_secs() / 86_400;
            if left.is_zero() {
                out.push(Finding::Problem(
                    "the certificate has expired: renew it (certbot renew) and reload chatd".into(),
                ));
            } else if days < 10 {
                out.push(Finding::Problem(format!(
                    "the certificate expires in {days} days: check that renewal works (certbot renew --dry-run)"
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

// ---- a minimal DER walk for notAfter and the DNS names (RFC 5280 §4.1) ------------------------

/// One DER element: (tag, contents, rest).
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        (rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b)), &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The fields of tbsCertificate, in order.
fn tbs_fields(cert: &[u8]) -> Vec<(u8, &[u8])> {
    let mut fields = Vec::new();
    let Some((0x30, cert, _)) = der(cert) else { return fields };
    let Some((0x30, mut tbs, _)) = der(cert) else { return fields };
    while let Some((tag, value, rest)) = der(tbs) {
        fields.push((tag, value));
        tbs = rest;
    }
    fields
}

fn not_after(cert: &[u8]) -> Option<SystemTime> {
    let fields = tbs_fields(cert);
    // [0] version is optional; validity is the first SEQUENCE after serial and signature.
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (_, validity) = fields.get(skip + 3)?;
    let (_, _not_before, rest) = der(validity)?;
    let (tag, time, _) = der(rest)?;
    let text = std::str::from_utf8(time).ok()?;
    let (year, rest): (i64, &str) = match tag {
        // UTCTime: YYMMDDHHMMSSZ, years 1950-2049 (RFC 5280 §4.1.2.5.1).
        0x17 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        // GeneralizedTime: YYYYMMDDHHMMSSZ.
        0x18 => (text.get(..4)?.parse().ok()?, text.get(4..)?),
        _ => return None,
    };
    let num = |r: std::ops::Range<usize>| rest.get(r).and_then(|s| s.parse::<i64>().ok());
    let (month, day, hour, minute, second) = (num(0..2)?, num(2..4)?, num(4..6)?, num(6..8)?, num(8..10)?);
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// dNSName entries of the subjectAltName extension.
fn dns_names(cert: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let Some((_, extensions)) = tbs_fields(cert).into_iter().find(|(tag, _)| *tag == 0xa3) else { return names };
    let Some((0x30, mut list, _)) = der(extensions) else { return names };
    while let Some((_, ext, rest)) = der(list) {
        list = rest;
        let Some((0x06, oid, mut body)) = der(ext) else { continue };
        if oid != [0x55, 0x1d, 0x11] {
            continue; // not subjectAltName (2.5.29.17)
        }
        if let Some((0x01, _, after)) = der(body) {
            body = after; // "critical" flag
        }
        let Some((0x04, octets, _)) = der(body) else { continue };
        let Some((0x30, mut general, _)) = der(octets) else { continue };
        while let Some((tag, value, rest)) = der(general) {
            general = rest;
            if tag == 0x82 {
                names.extend(std::str::from_utf8(value).ok().map(str::to_owned));
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2026, 12, 4), 20_791);
    }

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
