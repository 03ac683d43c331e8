//! The grid every file format is read into, so that one set of rules validates them all.

/// One cell as the file holds it. Text is kept untrimmed: passwords keep their spaces,
/// and every other column is trimmed by the validator.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Cell {
    Text(String),
    /// A spreadsheet error value such as `#N/A` or `#REF!`, as the spreadsheet shows it.
    SpreadsheetError(String),
}

impl Cell {
    pub(crate) fn is_blank(&self) -> bool {
        match self {
            Cell::Text(text) => text.trim().is_empty(),
            Cell::SpreadsheetError(_) => false,
        }
    }
}

/// One row with the line number a person sees in the file (1-based).
pub(crate) struct Row {
    pub(crate) line: usize,
    pub(crate) cells: Vec<Cell>,
}

impl Row {
    pub(crate) fn is_blank(&self) -> bool {
        self.cells.iter().all(Cell::is_blank)
    }
}

/// How the file names its columns, for messages: a CSV file has numbered fields, a
/// spreadsheet has lettered columns.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColumnNaming {
    /// Delimited text with this delimiter; field 0 is column 1.
    Delimited { delimiter: u8 },
    /// A worksheet whose cell 0 sits in this 0-based sheet column.
    Lettered { first_column: u32 },
}

impl ColumnNaming {
    /// How a person finds the column of cell `index` of a row.
    pub(crate) fn label(self, index: usize) -> String {
        match self {
            ColumnNaming::Delimited { .. } => format!("column {}", index + 1),
            ColumnNaming::Lettered { first_column } => {
                // A worksheet has at most 16,384 columns, so the sum fits in a u64.
                let absolute = u64::from(first_column) + index as u64;
                format!("column {}", column_letters(absolute))
            }
        }
    }
}

pub(crate) struct Table {
    pub(crate) rows: Vec<Row>,
    pub(crate) naming: ColumnNaming,
}

/// `0` is `A`, `25` is `Z`, `26` is `AA`: the letters Excel shows above a column.
pub(crate) fn column_letters(index: u64) -> String {
    let mut letters = Vec::new();
    let mut rest = index + 1;
    while rest > 0 {
        let digit = (rest - 1) % 26;
        letters.push(char::from(b'A' + digit as u8));
        rest = (rest - 1) / 26;
    }
    letters.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_letters_match_what_excel_shows() {
        for (index, letters) in [
            (0, "A"),
            (7, "H"),
            (25, "Z"),
            (26, "AA"),
            (27, "AB"),
            (701, "ZZ"),
            (702, "AAA"),
        ] {
            assert_eq!(column_letters(index), letters, "index {index}");
        }
    }

    #[test]
    fn labels_count_from_one_or_from_the_first_sheet_column() {
        assert_eq!(
            ColumnNaming::Delimited { delimiter: b',' }.label(6),
            "column 7"
        );
        assert_eq!(
            ColumnNaming::Lettered { first_column: 2 }.label(0),
            "column C"
        );
    }

    #[test]
    fn blank_means_only_spaces_and_never_a_spreadsheet_error() {
        let row = Row {
            line: 3,
            cells: vec![Cell::Text(" ".into()), Cell::Text(String::new())],
        };
        assert!(row.is_blank());
        assert!(!Cell::SpreadsheetError("#N/A".into()).is_blank());
    }
}
