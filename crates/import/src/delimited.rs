//! Reads delimited text into the grid with physical line numbers: CSV as Excel and other
//! programs save it, with or without a byte order mark, with `,` or (in locales where the
//! comma is the decimal mark) `;`, and the tab-separated UTF-16 of Excel's "Unicode Text".

use std::borrow::Cow;

use crate::table::{Cell, ColumnNaming, Row, Table};
use crate::{ImportError, Limits};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const UTF16LE_BOM: &[u8] = b"\xFF\xFE";
const UTF16BE_BOM: &[u8] = b"\xFE\xFF";

/// The rows of the text; refused as soon as it has more rows with a value than `limits`
/// allow, so a long file is never held as a table.
pub(crate) fn read(bytes: &[u8], limits: Limits) -> Result<Table, ImportError> {
    let text = decode(bytes)?;
    let (body, lines_before_body, declared) = split_separator_line(&text);
    let delimiter = declared.unwrap_or_else(|| sniff_delimiter(body));

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(body.as_bytes());
    let mut lines = LineCounter {
        text: body.as_bytes(),
        offset: 0,
        line: 1,
    };
    let mut rows = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut filled = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(error) => return Err(ImportError::Unreadable(error.to_string())),
        }
        // The reader gives every record the byte offset where it stopped reading before
        // it (its `line` is where the previous record ended, which misses the terminator
        // and the blank lines skipped since, so the lines are counted here).
        let consumed = record.position().map_or(0, csv::Position::byte);
        let line = lines.record_line(consumed) + lines_before_body;
        let cells = record
            .iter()
            // `body` is a `str` and the reader splits only at ASCII bytes, so every field is
            // UTF-8 and nothing is replaced.
            .map(|field| Cell::Text(String::from_utf8_lossy(field).into_owned()))
            .collect();
        let row = Row { line, cells };
        if !row.is_blank() {
            filled += 1;
            if filled > limits.max_rows() {
                return Err(crate::too_many_mailboxes(limits));
            }
        }
        rows.push(row);
    }
    Ok(Table {
        rows,
        naming: ColumnNaming::Delimited { delimiter },
    })
}

/// Physical line numbers of records, counted once through the text as records arrive.
struct LineCounter<'a> {
    text: &'a [u8],
    /// Where the previous record starts, and its line.
    offset: usize,
    line: usize,
}

impl LineCounter<'_> {
    /// The line of the record read after `consumed` bytes: the reader skips the previous
    /// record's terminator and blank lines before it, and a record never starts with a
    /// line break (a value that does is quoted).
    fn record_line(&mut self, consumed: u64) -> usize {
        let mut start = usize::try_from(consumed)
            .unwrap_or(usize::MAX)
            .clamp(self.offset, self.text.len());
        while matches!(self.text.get(start), Some(b'\r' | b'\n')) {
            start += 1;
        }
        let passed = &self.text[self.offset..start];
        // A line ends with LF, CRLF, or (classic Mac OS exports) a lone CR.
        let breaks = passed
            .iter()
            .enumerate()
            .filter(|&(index, &byte)| {
                byte == b'\n'
                    || (byte == b'\r' && self.text.get(self.offset + index + 1) != Some(&b'\n'))
            })
            .count();
        self.line += breaks;
        self.offset = start;
        self.line
    }
}

/// The text of the file: UTF-8 (a byte order mark is dropped) or UTF-16 with its mark.
fn decode(bytes: &[u8]) -> Result<Cow<'_, str>, ImportError> {
    if let Some(rest) = bytes.strip_prefix(UTF16LE_BOM) {
        return decode_utf16(rest, u16::from_le_bytes).map(Cow::Owned);
    }
    if let Some(rest) = bytes.strip_prefix(UTF16BE_BOM) {
        return decode_utf16(rest, u16::from_be_bytes).map(Cow::Owned);
    }
    let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|error| {
            let line = 1 + bytes[..error.valid_up_to()]
                .iter()
                .filter(|&&byte| byte == b'\n')
                .count();
            ImportError::Unreadable(format!(
                "line {line} is not UTF-8 text: save the file again as \"CSV UTF-8\" (in Excel: \
             File > Save As > CSV UTF-8 (Comma delimited))"
            ))
        })
}

fn decode_utf16(bytes: &[u8], unit: fn([u8; 2]) -> u16) -> Result<String, ImportError> {
    let damaged = || {
        ImportError::Unreadable(
            "the file says it is UTF-16 text but is damaged: save it again as \"CSV UTF-8\""
                .to_string(),
        )
    };
    let pairs = bytes.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return Err(damaged());
    }
    let units: Vec<u16> = pairs.map(|pair| unit([pair[0], pair[1]])).collect();
    String::from_utf16(&units).map_err(|_| damaged())
}

/// Excel reads (and some programs write) a first line `sep=;` that names the delimiter.
/// Returns the text after it, how many lines were before that text, and the delimiter.
fn split_separator_line(text: &str) -> (&str, usize, Option<u8>) {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let first = first.strip_suffix('\r').unwrap_or(first);
    let declared = first
        .get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("sep="))
        .and_then(|_| match first.as_bytes() {
            [_, _, _, _, delimiter] if delimiter.is_ascii() && *delimiter != b'"' => {
                Some(*delimiter)
            }
            _ => None,
        });
    match declared {
        Some(delimiter) => (rest, 1, Some(delimiter)),
        None => (text, 0, None),
    }
}

/// The header line decides: `,` when it has one; else `;` (Excel in locales whose
/// decimal mark is the comma); else a tab (Excel's "Unicode Text"); else `,`.
fn sniff_delimiter(body: &str) -> u8 {
    let header = body
        .lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("");
    if header.contains(',') {
        b','
    } else if header.contains(';') {
        b';'
    } else if header.contains('\t') {
        b'\t'
    } else {
        b','
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(bytes: &[u8]) -> Result<Table, ImportError> {
        read(bytes, Limits::FILE)
    }

    #[test]
    fn more_rows_than_the_limit_are_refused_while_reading() {
        let limits = Limits {
            max_mailboxes: 3,
            ..Limits::UPLOAD
        };
        let mut text = String::from("a,b\n");
        assert!(read(b"a,b\n1,2\n\n\n2,3\n3,4\n", limits).is_ok());
        for index in 0..4 {
            text.push_str(&format!("{index},x\n"));
        }
        let Err(error) = read(text.as_bytes(), limits) else {
            panic!("four mailboxes where three are allowed")
        };
        assert!(matches!(error, ImportError::TooLarge(_)), "{error}");
        assert!(
            error.to_string().contains("more than 3 mailboxes"),
            "{error}"
        );
    }

    fn texts(table: &Table) -> Vec<(usize, Vec<String>)> {
        table
            .rows
            .iter()
            .map(|row| {
                let cells = row
                    .cells
                    .iter()
                    .map(|cell| match cell {
                        Cell::Text(text) => text.clone(),
                        Cell::SpreadsheetError(error) => format!("error {error}"),
                    })
                    .collect();
                (row.line, cells)
            })
            .collect()
    }

    fn row(line: usize, cells: &[&str]) -> (usize, Vec<String>) {
        (line, cells.iter().map(|cell| cell.to_string()).collect())
    }

    #[test]
    fn lines_count_quoted_newlines_and_skipped_blank_lines() {
        let table =
            read_all(b"a,b\r\n\"x\r\ny\",z\r\n\r\nq,\"1\n2\n3\"\nlast,row\n").expect("reads");
        assert_eq!(
            texts(&table),
            vec![
                row(1, &["a", "b"]),
                row(2, &["x\r\ny", "z"]),
                row(5, &["q", "1\n2\n3"]),
                row(8, &["last", "row"]),
            ]
        );
    }

    #[test]
    fn values_are_not_trimmed_here() {
        let table = read_all(b"a,b\n  spaced ,\"quoted \"\n").expect("reads");
        assert_eq!(texts(&table)[1], row(2, &["  spaced ", "quoted "]));
    }

    #[test]
    fn the_header_line_chooses_the_delimiter() {
        assert_eq!(sniff_delimiter("a,b;c\n"), b',');
        assert_eq!(sniff_delimiter("\n\na;b\nx,y\n"), b';');
        assert_eq!(sniff_delimiter("a\tb\n"), b'\t');
        assert_eq!(sniff_delimiter("a\n"), b',');
    }

    #[test]
    fn classic_mac_line_ends_count_as_lines() {
        let table = read_all(b"a,b\r\"1\r2\",x\r\rc,d\r").expect("reads");
        assert_eq!(
            texts(&table),
            vec![
                row(1, &["a", "b"]),
                row(2, &["1\r2", "x"]),
                row(5, &["c", "d"])
            ]
        );
    }

    #[test]
    fn a_sep_line_names_the_delimiter_and_still_counts_as_a_line() {
        let table = read_all(b"sep=|\r\na|b\r\nc,d|e\r\n").expect("reads");
        assert_eq!(
            texts(&table),
            vec![row(2, &["a", "b"]), row(3, &["c,d", "e"])]
        );
    }

    #[test]
    fn byte_order_marks_are_dropped() {
        let table = read_all(b"\xEF\xBB\xBFa,b\n").expect("reads");
        assert_eq!(texts(&table), vec![row(1, &["a", "b"])]);

        let utf16: Vec<u8> = "a\tb\r\nc\td\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let table = read_all(&[UTF16LE_BOM, &utf16].concat()).expect("reads UTF-16LE");
        assert_eq!(
            texts(&table),
            vec![row(1, &["a", "b"]), row(2, &["c", "d"])]
        );

        let utf16: Vec<u8> = "a;b\n".encode_utf16().flat_map(u16::to_be_bytes).collect();
        let table = read_all(&[UTF16BE_BOM, &utf16].concat()).expect("reads UTF-16BE");
        assert_eq!(texts(&table), vec![row(1, &["a", "b"])]);
    }

    #[test]
    fn text_that_is_not_utf8_names_its_line_and_the_fix() {
        let Err(error) = read_all(b"a,b\nok,ok\nM\xFCller,x\n") else {
            panic!("Latin-1 is refused")
        };
        let message = error.to_string();
        assert!(message.contains("line 3 is not UTF-8"), "{message}");
        assert!(message.contains("CSV UTF-8"), "{message}");
    }
}
