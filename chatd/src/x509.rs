//! Just enough of X.509 (RFC 5280 §4.1) to read a certificate's validity and DNS names: a DER
//! walk over `tbsCertificate`. Used by `chatd doctor` and by the ACME renewal schedule. Anything
//! malformed reads as `None` or no names; the certificate was already accepted by rustls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// `(notBefore, notAfter)` of a DER certificate.
pub fn validity(cert: &[u8]) -> Option<(SystemTime, SystemTime)> {
    let fields = tbs_fields(cert);
    // [0] version is optional; validity is the first SEQUENCE after serial and signature.
    let skip = usize::from(fields.first()?.0 == 0xa0);
    let (_, validity) = fields.get(skip + 3)?;
    let (tag, not_before, rest) = der(validity)?;
    let not_before = time(tag, not_before)?;
    let (tag, not_after, _) = der(rest)?;
    Some((not_before, time(tag, not_after)?))
}

/// A UTCTime or GeneralizedTime in the `Z` form RFC 5280 §4.1.2.5 requires.
fn time(tag: u8, value: &[u8]) -> Option<SystemTime> {
    let text = std::str::from_utf8(value).ok()?;
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
pub fn dns_names(cert: &[u8]) -> Vec<String> {
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
    fn validity_and_names_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["chat.example.com".to_owned()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2026, 1, 2);
        params.not_after = rcgen::date_time_ymd(2060, 3, 4);
        let cert = params.self_signed(&key).unwrap();
        let (from, until) = validity(cert.der()).unwrap();
        let day = |y, m, d| UNIX_EPOCH + Duration::from_secs(days_from_civil(y, m, d) as u64 * 86_400);
        assert_eq!((from, until), (day(2026, 1, 2), day(2060, 3, 4)));
        assert_eq!(dns_names(cert.der()), ["chat.example.com"]);
        assert_eq!(validity(b"\x30\x03\x02\x01"), None);
    }
}
