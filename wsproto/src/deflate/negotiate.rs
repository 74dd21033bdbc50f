//! RFC 7692 §5-7.1 — negotiating `permessage-deflate` in `Sec-WebSocket-Extensions`.
//!
//! The header grammar is RFC 6455 §9.1:
//!
//! ```text
//! extension-list = 1#extension
//! extension      = extension-token *( ";" extension-param )
//! extension-param = token [ "=" (token | quoted-string) ]
//! ```
//!
//! A client may send several offers, most preferred first, in one header or several. The
//! server takes the first `permessage-deflate` offer whose parameters are all valid (§5: an
//! offer with an unknown parameter, a repeated parameter or a bad value is declined, and the
//! next one is considered) and answers with exactly one extension. The client fails the
//! connection if the answer names anything it did not offer or breaks a rule of §7.1.
//!
//! | parameter | in an offer | in an answer |
//! |---|---|---|
//! | `server_no_context_takeover` | no value | no value; the server may add it unasked (§7.1.1.1) |
//! | `client_no_context_takeover` | no value | no value; the server may add it unasked (§7.1.1.2) |
//! | `server_max_window_bits` | 8-15 | required if offered, at most the offered value; may be added unasked (§7.1.2.1) |
//! | `client_max_window_bits` | optional value 8-15 | only if offered, at most the offered value (§7.1.2.2) |

use super::{DeflateConfig, PerMessageDeflate, EXTENSION};

/// One extension from a `Sec-WebSocket-Extensions` header: its name and parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Extension {
    /// The extension token, e.g. `permessage-deflate`.
    pub name: String,
    /// Parameters in order, values unquoted.
    pub params: Vec<(String, Option<String>)>,
}

/// Why a header or an answer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Malformed(pub &'static str);

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Parses every extension in `values` (each one header line), in order.
pub fn parse<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Result<Vec<Extension>, Malformed> {
    let mut out = Vec::new();
    for value in values {
        let mut p = Parser { s: value, i: 0 };
        loop {
            p.ows();
            if p.eat(b',') {
                continue; // empty list elements are allowed (RFC 7230 §7)
            }
            if p.done() {
                break;
            }
            let name = p.token().ok_or(Malformed("extension name is not a token"))?;
            let mut params = Vec::new();
            loop {
                p.ows();
                if !p.eat(b';') {
                    break;
                }
                p.ows();
                let param = p.token().ok_or(Malformed("parameter name is not a token"))?;
                p.ows();
                let value = if p.eat(b'=') {
                    p.ows();
                    Some(p.value()?)
                } else {
                    None
                };
                params.push((param, value));
            }
            out.push(Extension { name, params });
            p.ows();
            if !p.done() && !p.eat(b',') {
                return Err(Malformed("expected ',' between extensions"));
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn ows(&mut self) {
        while self.s.get(self.i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.s.get(self.i) == Some(&c);
        self.i += usize::from(hit);
        hit
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.s.get(self.i).is_some_and(|b| is_tchar(*b)) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    /// A token or a quoted-string, unquoted. §7.1 of RFC 7692: a quoted value must still be a
    /// token once unescaped.
    fn value(&mut self) -> Result<String, Malformed> {
        if !self.eat(b'"') {
            return self.token().ok_or(Malformed("parameter value is not a token"));
        }
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err(Malformed("unterminated quoted string")),
                Some(b'"') => {
                    self.i += 1;
                    break;
                }
                Some(b'\\') => {
                    let escaped = *self.s.get(self.i + 1).ok_or(Malformed("unterminated quoted string"))?;
                    out.push(escaped);
                    self.i += 2;
                }
                Some(b) => {
                    out.push(*b);
                    self.i += 1;
                }
            }
        }
        if out.is_empty() || !out.iter().all(|b| is_tchar(*b)) {
            return Err(Malformed("quoted parameter value is not a token"));
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// The parameters of one `permessage-deflate` offer or answer, checked for §7.1's syntax.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Params {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value.
    client_max_window_bits: Option<Option<u8>>,
}

/// 8 to 15, decimal, no leading zero (§7.1.2.1).
fn window_bits(value: &str) -> Option<u8> {
    match value.as_bytes() {
        [b'8'..=b'9'] | [b'1', b'0'..=b'5'] => value.parse().ok(),
        _ => None,
    }
}

fn params(ext: &Extension) -> Result<Params, Malformed> {
    let mut p = Params::default();
    for (name, value) in &ext.params {
        let repeated = Malformed("a permessage-deflate parameter appears twice");
        match (name.to_ascii_lowercase().as_str(), value) {
            ("server_no_context_takeover", None) => {
                if std::mem::replace(&mut p.server_no_context_takeover, true) {
                    return Err(repeated);
                }
            }
            ("client_no_context_takeover", None) => {
                if std::mem::replace(&mut p.client_no_context_takeover, true) {
                    return Err(repeated);
                }
            }
            ("server_max_window_bits", Some(v)) => {
                let bits = window_bits(v).ok_or(Malformed("server_max_window_bits is not 8 to 15"))?;
                if p.server_max_window_bits.replace(bits).is_some() {
                    return Err(repeated);
                }
            }
            ("client_max_window_bits", v) => {
                let bits = match v {
                    None => None,
                    Some(v) => Some(window_bits(v).ok_or(Malformed("client_max_window_bits is not 8 to 15"))?),
                };
                if p.client_max_window_bits.replace(bits).is_some() {
                    return Err(repeated);
                }
            }
            ("server_no_context_takeover" | "client_no_context_takeover", Some(_)) => {
                return Err(Malformed("a no_context_takeover parameter has a value"))
            }
            ("server_max_window_bits", None) => return Err(Malformed("server_max_window_bits has no value")),
            _ => return Err(Malformed("unknown permessage-deflate parameter")),
        }
    }
    Ok(p)
}

/// Server side: the first offer in `offers` that can be accepted under `config`: the agreed
/// parameters and the answer's header value. `None` declines (no valid `permessage-deflate`
/// offer).
pub fn accept(offers: &[Extension], config: &DeflateConfig) -> Option<(PerMessageDeflate, String)> {
    offers.iter().filter(|e| e.name.eq_ignore_ascii_case(EXTENSION)).find_map(|offer| {
        let p = params(offer).ok()?;
        let agreed = PerMessageDeflate {
            server_no_context_takeover: p.server_no_context_takeover || config.server_no_context_takeover,
            client_no_context_takeover: p.client_no_context_takeover || config.client_no_context_takeover,
            server_max_window_bits: p.server_max_window_bits.unwrap_or(15).min(config.server_max_window_bits),
            client_max_window_bits: match p.client_max_window_bits {
                // Not offered: the client may use 15 and the answer can't say otherwise.
                None => 15,
                Some(offered) => offered.unwrap_or(15).min(config.client_max_window_bits),
            },
        };
        let mut answer = String::from(EXTENSION);
        if agreed.server_no_context_takeover {
            answer.push_str("; server_no_context_takeover");
        }
        if agreed.client_no_context_takeover {
            answer.push_str("; client_no_context_takeover");
        }
        if p.server_max_window_bits.is_some() || agreed.server_max_window_bits < 15 {
            answer.push_str(&format!("; server_max_window_bits={}", agreed.server_max_window_bits));
        }
        // A window size parameter is echoed when offered with a value (§7.1.2.2).
        if let Some(offered) = p.client_max_window_bits {
            if offered.is_some() || agreed.client_max_window_bits < 15 {
                answer.push_str(&format!("; client_max_window_bits={}", agreed.client_max_window_bits));
            }
        }
        Some((agreed, answer))
    })
}

/// Client side: the offer to send for `config`.
pub fn offer(config: &DeflateConfig) -> String {
    let mut out = String::from(EXTENSION);
    if config.server_no_context_takeover {
        out.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        out.push_str("; client_no_context_takeover");
    }
    if config.server_max_window_bits < 15 {
        out.push_str(&format!("; server_max_window_bits={}", config.server_max_window_bits));
    }
    // Always offered, so the server may limit our window (§7.1.2.2).
    if config.client_max_window_bits < 15 {
        out.push_str(&format!("; client_max_window_bits={}", config.client_max_window_bits));
    } else {
        out.push_str("; client_max_window_bits");
    }
    out
}

/// Client side: checks the server's answer (every `Sec-WebSocket-Extensions` value, parsed)
/// against the offer made for `config`. `Ok(None)`: the server declined.
pub fn check_answer(answer: &[Extension], config: &DeflateConfig) -> Result<Option<PerMessageDeflate>, Malformed> {
    let (ext, rest) = match answer {
        [] => return Ok(None),
        [ext, rest @ ..] => (ext, rest),
    };
    if !rest.is_empty() {
        return Err(Malformed("more than one extension in the answer"));
    }
    if !ext.name.eq_ignore_ascii_case(EXTENSION) {
        return Err(Malformed("an extension that was not offered"));
    }
    let p = params(ext)?;
    let asked_server_bits = (config.server_max_window_bits < 15).then_some(config.server_max_window_bits);
    let server_max_window_bits = match (asked_server_bits, p.server_max_window_bits) {
        (Some(_), None) => return Err(Malformed("server_max_window_bits was asked for and not answered")),
        (Some(asked), Some(got)) if got > asked => return Err(Malformed("server_max_window_bits above the offer")),
        (_, got) => got.unwrap_or(15),
    };
    let client_max_window_bits = match p.client_max_window_bits {
        None => config.client_max_window_bits,
        Some(None) => return Err(Malformed("client_max_window_bits without a value in the answer")),
        Some(Some(got)) if got > config.client_max_window_bits => {
            return Err(Malformed("client_max_window_bits above the offer"))
        }
        Some(Some(got)) => got,
    };
    Ok(Some(PerMessageDeflate {
        server_no_context_takeover: p.server_no_context_takeover,
        client_no_context_takeover: p.client_no_context_takeover || config.client_no_context_takeover,
        server_max_window_bits,
        client_max_window_bits,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ext(header: &str) -> Vec<Extension> {
        parse([header.as_bytes()]).unwrap()
    }

    #[test]
    fn header_grammar() {
        let offers = ext("permessage-deflate; client_max_window_bits; server_max_window_bits=\"10\" , foo ;a=b,,bar");
        assert_eq!(offers.len(), 3);
        assert_eq!(offers[0].name, "permessage-deflate");
        assert_eq!(
            offers[0].params,
            [("client_max_window_bits".into(), None), ("server_max_window_bits".into(), Some("10".into()))]
        );
        assert_eq!(offers[1], Extension { name: "foo".into(), params: vec![("a".into(), Some("b".into()))] });
        // Several header lines are one list.
        assert_eq!(parse([&b"a"[..], b"b; c"]).unwrap().len(), 2);
        for bad in ["permessage-deflate; x=\"1 0\"", "a b", "; x", "a; =1", "a; x=\"unterminated", "a; x=\"\""] {
            assert!(parse([bad.as_bytes()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn window_bits_are_8_to_15_without_leading_zeros() {
        assert_eq!(window_bits("8"), Some(8));
        assert_eq!(window_bits("15"), Some(15));
        for bad in ["7", "16", "08", "+9", "9a", ""] {
            assert_eq!(window_bits(bad), None, "{bad}");
        }
    }

    #[test]
    fn server_takes_the_first_valid_offer() {
        let config = DeflateConfig::new();
        // The first offer repeats a parameter and is declined; the second is taken.
        let offers = ext("permessage-deflate; server_no_context_takeover; server_no_context_takeover, \
                          permessage-deflate; server_max_window_bits=10; client_max_window_bits");
        let (agreed, answer) = accept(&offers, &config).unwrap();
        assert_eq!(agreed.server_max_window_bits, 10);
        assert!(!agreed.server_no_context_takeover);
        assert_eq!(answer, "permessage-deflate; server_max_window_bits=10");
        // Unknown parameters, values on flags, bad windows, other extensions: declined.
        for declined in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "x-webkit-deflate-frame",
        ] {
            assert!(accept(&ext(declined), &config).is_none(), "{declined}");
        }
    }

    #[test]
    fn server_imposes_its_config() {
        let config = DeflateConfig::new().server_no_context_takeover(true).server_max_window_bits(12);
        let offers = ext("permessage-deflate; client_max_window_bits");
        let (_, answer) = accept(&offers, &config).unwrap();
        assert_eq!(answer, "permessage-deflate; server_no_context_takeover; server_max_window_bits=12");
        // The client's window is limited only if it offered the parameter.
        let config = DeflateConfig::new().client_max_window_bits(10);
        let with = ext("permessage-deflate; client_max_window_bits");
        assert_eq!(accept(&with, &config).unwrap().1, "permessage-deflate; client_max_window_bits=10");
        let (agreed, answer) = accept(&ext("permessage-deflate"), &config).unwrap();
        assert_eq!((agreed.client_max_window_bits, answer.as_str()), (15, "permessage-deflate"));
    }

    #[test]
    fn client_offer_and_answer_rules() {
        let config = DeflateConfig::new();
        assert_eq!(offer(&config), "permessage-deflate; client_max_window_bits");
        let ok = |a: &str| check_answer(&ext(a), &config);
        assert_eq!(ok("").unwrap(), None);
        let agreed = ok("permessage-deflate; server_no_context_takeover; client_max_window_bits=9").unwrap().unwrap();
        assert!(agreed.server_no_context_takeover);
        assert_eq!(agreed.client_max_window_bits, 9);
        for bad in [
            "permessage-deflate, permessage-deflate",
            "x-other",
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; bogus",
            "permessage-deflate; server_max_window_bits=7",
        ] {
            assert!(ok(bad).is_err(), "{bad}");
        }
        // Asked for a server window: the answer must carry one, no larger.
        let small = DeflateConfig::new().server_max_window_bits(10).client_max_window_bits(12);
        assert_eq!(offer(&small), "permessage-deflate; server_max_window_bits=10; client_max_window_bits=12");
        assert!(check_answer(&ext("permessage-deflate"), &small).is_err());
        assert!(check_answer(&ext("permessage-deflate; server_max_window_bits=11"), &small).is_err());
        assert!(check_answer(&ext("permessage-deflate; server_max_window_bits=9; client_max_window_bits=13"), &small)
            .is_err());
        let agreed = check_answer(&ext("permessage-deflate; server_max_window_bits=9"), &small).unwrap().unwrap();
        assert_eq!((agreed.server_max_window_bits, agreed.client_max_window_bits), (9, 12));
    }
}
