//! Arrival dates in IMAP's INTERNALDATE form (`05-Mar-2023 10:00:00 +0100`), the form
//! the engine carries them in: read from a Date header (POP3 keeps no arrival date),
//! and to and from a point in time (Exchange keeps those).

use time::OffsetDateTime;

/// The arrival date a POP3 message gets at the destination: its Date header, as an
/// IMAP INTERNALDATE (`01-Feb-2024 10:00:00 +0100`). POP3 itself keeps none.
pub fn internal_date_from_header(date: &str) -> Option<String> {
    let text = date.split('(').next()?.trim();
    let text = match text.split_once(',') {
        Some((_, rest)) => rest.trim(),
        None => text,
    };
    let mut parts = text.split_whitespace();
    let day: u32 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let month = MONTHS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(&month[..month.len().min(3)]))?;
    let year: i32 = match parts.next()?.parse::<i32>().ok()? {
        y if y < 50 => 2000 + y,
        y if y < 100 => 1900 + y,
        y => y,
    };
    let time = parts.next()?;
    let mut clock = time.split(':');
    let hour: u32 = clock.next()?.parse().ok()?;
    let minute: u32 = clock.next()?.parse().ok()?;
    let second: u32 = clock.next().map(|s| s.parse().ok()).unwrap_or(Some(0))?;
    let zone = match parts.next().unwrap_or("+0000") {
        z if (z.starts_with('+') || z.starts_with('-'))
            && z.len() == 5
            && z[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            z.to_string()
        }
        z => match z.to_ascii_uppercase().as_str() {
            "UT" | "UTC" | "GMT" | "Z" => "+0000",
            "EST" => "-0500",
            "EDT" => "-0400",
            "CST" => "-0600",
            "CDT" => "-0500",
            "MST" => "-0700",
            "MDT" => "-0600",
            "PST" => "-0800",
            "PDT" => "-0700",
            _ => "+0000",
        }
        .to_string(),
    };
    if !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
        || !(1900..=9999).contains(&year)
    {
        return None;
    }
    Some(format!(
        "{day:02}-{month}-{year:04} {hour:02}:{minute:02}:{second:02} {zone}"
    ))
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

const INTERNAL_DATE: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[day padding:zero]-[month repr:short]-[year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
);

/// IMAP's INTERNALDATE form of a time.
pub fn internal_date(at: OffsetDateTime) -> String {
    at.format(INTERNAL_DATE).unwrap_or_default()
}

/// Reads an INTERNALDATE (`15-Mar-2023 10:00:00 +0000`, day possibly space-padded).
pub fn parse_internal_date(text: &str) -> Option<OffsetDateTime> {
    let text = text.trim();
    let padded;
    let text = if text.find('-') == Some(1) {
        padded = format!("0{text}");
        padded.as_str()
    } else {
        text
    };
    OffsetDateTime::parse(text, INTERNAL_DATE).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates_round_trip() {
        let at = parse_internal_date(" 5-Mar-2023 10:00:00 +0100").unwrap();
        assert_eq!(internal_date(at), "05-Mar-2023 10:00:00 +0100");
        assert_eq!(at.unix_timestamp(), 1_678_006_800);
    }

    #[test]
    fn date_headers_become_internal_dates() {
        let cases = [
            (
                "Mon, 1 Jan 2024 10:00:00 +0100",
                Some("01-Jan-2024 10:00:00 +0100"),
            ),
            (
                "Tue, 15 Aug 2023 23:59 -0700 (PDT)",
                Some("15-Aug-2023 23:59:00 -0700"),
            ),
            ("3 Mar 99 01:02:03 GMT", Some("03-Mar-1999 01:02:03 +0000")),
            (
                "Fri, 29 Feb 2008 12:00:00 EST",
                Some("29-Feb-2008 12:00:00 -0500"),
            ),
            ("yesterday", None),
            ("Mon, 45 Jan 2024 10:00:00 +0000", None),
        ];
        for (header, expected) in cases {
            assert_eq!(
                internal_date_from_header(header).as_deref(),
                expected,
                "{header}"
            );
        }
    }
}
