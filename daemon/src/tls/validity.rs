//! When a certificate stops being valid: its `notAfter`, read from the DER by a small walk
//! over the fields before it (RFC 5280, section 4.1):
//!
//! ```text
//! Certificate  ::= SEQUENCE { tbsCertificate TBSCertificate, ... }
//! TBSCertificate ::= SEQUENCE {
//!     version [0] EXPLICIT Version DEFAULT v1, serialNumber INTEGER,
//!     signature AlgorithmIdentifier, issuer Name,
//!     validity SEQUENCE { notBefore Time, notAfter Time }, ... }
//! Time ::= CHOICE { utcTime UTCTime, generalTime GeneralizedTime }
//! ```
//!
//! rustls checks the chain's validity only on the client's side, so nothing else looks at the
//! server's own certificate; a parse failure here is not an error (the daemon only warns).

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xA0;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;

/// Unix seconds of the certificate's `notAfter`, or `None` when the DER does not parse.
pub(crate) fn not_after(der: &[u8]) -> Option<i64> {
    let (cert, _) = expect(der, SEQUENCE)?;
    let (tbs, _) = expect(cert, SEQUENCE)?;
    let mut rest = tbs;
    if rest.first() == Some(&VERSION) {
        rest = element(rest)?.2;
    }
    for _serial_signature_issuer in 0..3 {
        rest = element(rest)?.2;
    }
    let (validity, _) = expect(rest, SEQUENCE)?;
    let (_, _, after_not_before) = element(validity)?;
    let (tag, time, _) = element(after_not_before)?;
    parse_time(tag, time)
}

/// One element: its tag, its contents and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (got, contents, rest) = element(input)?;
    (got == tag).then_some((contents, rest))
}

/// `YYMMDDHHMMSSZ` (UTCTime, years 1950 to 2049) or `YYYYMMDDHHMMSSZ` (GeneralizedTime).
fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let digits = |s: &str| -> Option<i64> {
        s.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, rest) = match tag {
        UTC_TIME if text.len() == 12 => {
            let yy = digits(&text[..2])?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (digits(&text[..4])?, &text[4..]),
        _ => return None,
    };
    let [month, day, hour, minute, second] = [0, 2, 4, 6, 8].map(|i| digits(&rest[i..i + 2]));
    let (month, day) = (month?, day?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour? * 3_600 + minute? * 60 + second?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn times_convert_to_unix_seconds() {
        assert_eq!(parse_time(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(
            parse_time(UTC_TIME, b"491231235959Z"),
            Some(2_524_607_999),
            "UTCTime years below 50 are 20xx"
        );
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20240229120000Z"),
            Some(1_709_208_000)
        );
        assert_eq!(parse_time(UTC_TIME, b"700101000000"), None, "no Z");
        assert_eq!(parse_time(UTC_TIME, b"701301000000Z"), None, "month 13");
    }

    #[test]
    fn the_fixture_certificates_not_after_is_read() {
        let pem = include_str!("../../tests/fixtures/server.crt");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("fixture PEM");
        let t = not_after(&der).expect("fixture notAfter");
        // Valid for 100 years from 2026 (see tests/fixtures/README.md).
        assert!((4_000_000_000..6_000_000_000).contains(&t), "{t}");
        let expired = include_str!("../../tests/fixtures/expired.crt");
        let der = CertificateDer::from_pem_slice(expired.as_bytes()).expect("fixture PEM");
        assert_eq!(not_after(&der), Some(1_609_459_200), "2021-01-01T00:00:00Z");
    }

    #[test]
    fn truncated_der_is_not_a_time() {
        let pem = include_str!("../../tests/fixtures/server.crt");
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("fixture PEM");
        for len in [0, 1, 2, 10, 40] {
            assert_eq!(not_after(&der[..len]), None, "{len}");
        }
    }
}
