//! Reads the first worksheet of a workbook (XLSX, and through calamine XLSB, XLS and ODS)
//! into the grid, numbering rows as the spreadsheet shows them.

use std::fmt;
use std::io::{Cursor, Read, Seek};

use calamine::{
    Data, Ods, Range, Reader, SheetType, SheetVisible, Sheets, Xls, Xlsb, Xlsx,
    open_workbook_from_rs,
};

use crate::ImportError;
use crate::detect::WorkbookKind;
use crate::table::{Cell, ColumnNaming, Row, Table};

pub(crate) fn read(name: &str, kind: WorkbookKind, bytes: &[u8]) -> Result<Table, ImportError> {
    let mut workbook = open(name, kind, bytes)?;
    let Some(sheet) = first_worksheet(&workbook) else {
        return Ok(Table {
            rows: Vec::new(),
            naming: ColumnNaming::Lettered { first_column: 0 },
        });
    };
    let range = workbook.worksheet_range(&sheet).map_err(|error| {
        ImportError::Unreadable(format!(
            "`{name}`: worksheet `{sheet}` could not be read: {error}"
        ))
    })?;
    Ok(table_from_range(&range))
}

type Workbook<'a> = Sheets<Cursor<&'a [u8]>>;

fn open<'a>(name: &str, kind: WorkbookKind, bytes: &'a [u8]) -> Result<Workbook<'a>, ImportError> {
    let cursor = Cursor::new(bytes);
    let unreadable = |what: &str, error: &dyn fmt::Display| {
        ImportError::Unreadable(format!("`{name}` could not be read as {what}: {error}"))
    };
    match kind {
        WorkbookKind::Xlsx => open_workbook_from_rs::<Xlsx<_>, _>(cursor)
            .map(Sheets::Xlsx)
            .map_err(|error| unreadable("an Excel workbook (.xlsx)", &error)),
        WorkbookKind::Xlsb => open_workbook_from_rs::<Xlsb<_>, _>(cursor)
            .map(Sheets::Xlsb)
            .map_err(|error| unreadable("an Excel binary workbook (.xlsb)", &error)),
        WorkbookKind::Ods => open_workbook_from_rs::<Ods<_>, _>(cursor)
            .map(Sheets::Ods)
            .map_err(|error| unreadable("an OpenDocument spreadsheet (.ods)", &error)),
        WorkbookKind::Xls => open_workbook_from_rs::<Xls<_>, _>(cursor)
            .map(Sheets::Xls)
            .map_err(|error| unreadable("an Excel 97-2003 workbook (.xls)", &error)),
        WorkbookKind::AnyZip => open_workbook_from_rs::<Xlsx<_>, _>(cursor.clone())
            .map(Sheets::Xlsx)
            .or_else(|_| open_workbook_from_rs::<Ods<_>, _>(cursor.clone()).map(Sheets::Ods))
            .or_else(|_| open_workbook_from_rs::<Xlsb<_>, _>(cursor).map(Sheets::Xlsb))
            .map_err(|_| {
                ImportError::UnsupportedFormat(format!(
                    "`{name}` is a ZIP archive but not an Excel or OpenDocument workbook: save \
                     the mailbox list as CSV (.csv) or as an Excel workbook (.xlsx)"
                ))
            }),
    }
}

/// The first worksheet a person sees when opening the file: the first visible one, or
/// the first of all when every worksheet is hidden. Chart and macro sheets hold no rows.
fn first_worksheet<RS: Read + Seek>(workbook: &Sheets<RS>) -> Option<String> {
    let sheets = workbook.sheets_metadata();
    let mut worksheets = sheets
        .iter()
        .filter(|sheet| sheet.typ == SheetType::WorkSheet);
    let visible = worksheets
        .clone()
        .find(|sheet| sheet.visible == SheetVisible::Visible);
    visible
        .or_else(|| worksheets.next())
        .map(|sheet| sheet.name.clone())
}

fn table_from_range(range: &Range<Data>) -> Table {
    let Some((first_row, first_column)) = range.start() else {
        return Table {
            rows: Vec::new(),
            naming: ColumnNaming::Lettered { first_column: 0 },
        };
    };
    // A worksheet has at most 1,048,576 rows, so the row number fits in a usize.
    let first_line = first_row as usize + 1;
    let rows = range
        .rows()
        .enumerate()
        .map(|(index, cells)| Row {
            line: first_line + index,
            cells: cells.iter().map(cell_from_data).collect(),
        })
        .collect();
    Table {
        rows,
        naming: ColumnNaming::Lettered { first_column },
    }
}

fn cell_from_data(data: &Data) -> Cell {
    match data {
        Data::Empty => Cell::Text(String::new()),
        Data::String(text) | Data::DateTimeIso(text) | Data::DurationIso(text) => {
            Cell::Text(text.clone())
        }
        Data::Int(number) => Cell::Text(number.to_string()),
        Data::Float(number) => Cell::Text(number_text(*number)),
        Data::DateTime(date) => Cell::Text(number_text(date.as_f64())),
        Data::Bool(true) => Cell::Text("TRUE".to_string()),
        Data::Bool(false) => Cell::Text("FALSE".to_string()),
        Data::Error(error) => Cell::SpreadsheetError(error.to_string()),
    }
}

/// A number as a person typed it: spreadsheets store `12345` as a float, and a numeric
/// login must come out as `12345`, not `12345.0`.
fn number_text(number: f64) -> String {
    // Below 2^53 every whole float is exactly an integer, so the cast is exact.
    if number.is_finite() && number.fract() == 0.0 && number.abs() < 9_007_199_254_740_992.0 {
        format!("{}", number as i64)
    } else {
        format!("{number}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_numbers_lose_their_decimal_point() {
        for (number, text) in [
            (12345.0, "12345"),
            (-7.0, "-7"),
            (0.0, "0"),
            (-0.0, "0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e20, "100000000000000000000"),
        ] {
            assert_eq!(number_text(number), text, "{number}");
        }
    }

    #[test]
    fn cells_keep_their_text_and_errors_stay_errors() {
        assert!(matches!(cell_from_data(&Data::Int(42)), Cell::Text(text) if text == "42"));
        assert!(matches!(cell_from_data(&Data::Empty), Cell::Text(text) if text.is_empty()));
        assert!(
            matches!(cell_from_data(&Data::String(" pw ".into())), Cell::Text(text) if text == " pw ")
        );
        assert!(matches!(cell_from_data(&Data::Bool(true)), Cell::Text(text) if text == "TRUE"));
        assert!(matches!(
            cell_from_data(&Data::Error(calamine::CellErrorType::NA)),
            Cell::SpreadsheetError(text) if text == "#N/A"
        ));
    }

    #[test]
    fn rows_are_numbered_from_where_the_data_starts() {
        let mut range: Range<Data> = Range::new((2, 1), (3, 2));
        range.set_value((2, 1), Data::String("Source Email".into()));
        range.set_value((3, 2), Data::Float(7.0));
        let table = table_from_range(&range);
        let lines: Vec<usize> = table.rows.iter().map(|row| row.line).collect();
        assert_eq!(lines, vec![3, 4]);
        assert!(table.naming == ColumnNaming::Lettered { first_column: 1 });
        assert!(matches!(&table.rows[1].cells[1], Cell::Text(text) if text == "7"));
    }
}
