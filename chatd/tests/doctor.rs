//! `chatd doctor`: each check it reports, with certificates made at test time.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chatd::doctor::{check_certificate, Finding};
use common::tls::{temp_dir, write_pair, TestCa};

/// 2029-12-25 00:00 UTC.
fn christmas_2029() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_892_851_200)
}

fn config_for(cert: std::path::PathBuf, key: std::path::PathBuf) -> chatd::Config {
    chatd::Config { tls: Some(chatd::TlsFiles { cert, key }), ..chatd::Config::default() }
}

fn problems(findings: &[Finding]) -> Vec<&str> {
    findings.iter().filter_map(|f| if let Finding::Problem(p) = f { Some(p.as_str()) } else { None }).collect()
}

#[test]
fn certificate_checks_names_and_expiry() {
    let ca = TestCa::new();
    let dir = temp_dir("doctor-cert");
    let (cert, key) = write_pair(&dir, &ca.issue_for(&["chat.example.com"], Some((2030, 6, 1))));
    let good = check_certificate(&config_for(cert.clone(), key.clone()), Some("chat.example.com"), christmas_2029());
    assert!(problems(&good).is_empty(), "{good:?}");
    assert!(good.iter().any(|f| matches!(f, Finding::Ok(s) if s.contains("valid for 158 more days"))), "{good:?}");
    assert!(good.iter().any(|f| matches!(f, Finding::Ok(s) if s.contains("covers chat.example.com"))));

    let wrong = check_certificate(&config_for(cert.clone(), key.clone()), Some("other.example.com"), christmas_2029());
    assert!(problems(&wrong).iter().any(|p| p.contains("not other.example.com")), "{wrong:?}");

    let (cert, key) = write_pair(&dir, &ca.issue_for(&["*.example.com"], Some((2030, 1, 1))));
    let soon = check_certificate(&config_for(cert.clone(), key.clone()), Some("chat.example.com"), christmas_2029());
    assert_eq!(
        problems(&soon),
        ["the certificate expires in 7 days: check that renewal works (certbot renew --dry-run)"]
    );

    let (cert, key) = write_pair(&dir, &ca.issue_for(&["chat.example.com"], Some((2029, 12, 1))));
    let expired = check_certificate(&config_for(cert, key), None, christmas_2029());
    assert!(problems(&expired).iter().any(|p| p.contains("has expired")), "{expired:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_key_that_does_not_match_is_a_problem() {
    let ca = TestCa::new();
    let dir = temp_dir("doctor-mismatch");
    let (cert, _) = write_pair(&dir, &ca.issue());
    std::fs::write(dir.join("other.pem"), ca.issue().key_pem).unwrap();
    let found = check_certificate(&config_for(cert, dir.join("other.pem")), None, SystemTime::now());
    assert!(problems(&found).iter().any(|p| p.contains("does not match")), "{found:?}");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_command_exits_1_and_says_what_to_fix() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args([
            "doctor",
            "--domain",
            "192.0.2.1",
            "--listen",
            &addr,
            "--acme-webroot",
            "/nonexistent",
            "--http-redirect",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains(&format!("PROBLEM  {addr} is in use")), "{text}");
    assert!(text.contains("PROBLEM  ACME webroot /nonexistent"), "{text}");
    assert!(text.contains("PROBLEM  A 192.0.2.1 -> 192.0.2.1 is not an address of this machine"), "{text}");
    assert!(text.ends_with("3 problem(s) to fix\n"), "{text}");
    let ok = Command::new(env!("CARGO_BIN_EXE_chatd"))
        .args(["doctor", "--domain", "127.0.0.1", "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
}

fn acme_config(data_dir: std::path::PathBuf, challenge: chatd::acme::Challenge) -> chatd::acme::AcmeConfig {
    chatd::acme::AcmeConfig {
        domains: vec!["chat.example.com".into()],
        email: None,
        directory: "https://acme.example/directory".into(),
        data_dir,
        ca_root: None,
        challenge,
    }
}

#[test]
fn the_acme_data_dir_must_be_writable() {
    use chatd::doctor::check_data_dir;
    let dir = temp_dir("doctor-data");
    assert!(matches!(check_data_dir(&dir), Finding::Ok(s) if s.contains("is writable")));
    assert!(matches!(check_data_dir(&dir.join("new/sub")), Finding::Ok(s) if s.contains("will be created")));
    // A file where the directory should be (permissions can't show it: tests may run as root).
    std::fs::write(dir.join("file"), "").unwrap();
    assert!(matches!(check_data_dir(&dir.join("file")), Finding::Problem(s) if s.contains("not writable")));
    assert!(matches!(check_data_dir(&dir.join("file/sub")), Finding::Problem(s) if s.contains("cannot be created")));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn the_acme_challenge_must_reach_chatd() {
    use chatd::acme::Challenge;
    use chatd::doctor::check_challenge;
    let listen = |port: u16| std::net::SocketAddr::from(([0, 0, 0, 0], port));
    let alpn = acme_config("/tmp".into(), Challenge::TlsAlpn01);
    let config = chatd::Config::default();
    assert!(matches!(check_challenge(&config, &alpn, listen(443)), Finding::Ok(_)));
    assert!(matches!(check_challenge(&config, &alpn, listen(8443)), Finding::Note(s) if s.contains("forward 443")));
    let http = acme_config("/tmp".into(), Challenge::Http01);
    assert!(
        matches!(check_challenge(&config, &http, listen(443)), Finding::Problem(s) if s.contains("--http-redirect"))
    );
    let redirect = chatd::Config { http_redirect: Some(listen(80)), ..chatd::Config::default() };
    assert!(matches!(check_challenge(&redirect, &http, listen(443)), Finding::Ok(_)));
}

#[test]
fn with_acme_the_stored_certificate_is_checked() {
    let ca = TestCa::new();
    let data = temp_dir("doctor-acme-cert");
    let acme = acme_config(data.clone(), chatd::acme::Challenge::TlsAlpn01);
    let config = chatd::Config { acme: Some(acme.clone()), ..chatd::Config::default() };
    let none = check_certificate(&config, Some("chat.example.com"), christmas_2029());
    assert!(matches!(&none[..], [Finding::Note(s)] if s.contains("will order one")), "{none:?}");
    let store = chatd::acme::Store::path(&data, &acme.directory);
    let leaf = ca.issue_for(&["chat.example.com"], Some((2030, 1, 1)));
    std::fs::create_dir_all(&store).unwrap();
    std::fs::write(store.join("certificate.pem"), &leaf.cert_pem).unwrap();
    std::fs::write(store.join("key.pem"), &leaf.key_pem).unwrap();
    let found = check_certificate(&config, Some("chat.example.com"), christmas_2029());
    assert!(found.iter().any(|f| matches!(f, Finding::Ok(s) if s.contains("covers chat.example.com"))), "{found:?}");
    assert!(
        problems(&found).iter().any(|p| p.contains("expires in 7 days: check that renewal works (chatd's log")),
        "{found:?}"
    );
    std::fs::remove_dir_all(data).unwrap();
}
