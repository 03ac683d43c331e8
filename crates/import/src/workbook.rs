//! Reads the first worksheet of a workbook (XLSX, and through calamine XLSB, XLS and ODS)
//! into the grid, numbering rows as the spreadsheet shows them.
//!
//! A workbook is checked before calamine parses it: its ZIP archive's parts, as declared
//! in the central directory and as they really inflate, must stay within
//! [`crate::limits`] (calamine reads every shared string into memory when it opens a
//! workbook). XLSX and XLSB worksheets are read cell by cell, never as calamine's dense
//! `Range`, which allocates the whole rectangle between the first and the last cell: a
//! 5 KB file with cells in `A1` and `XFD1048576` asked for 1.7·10¹⁰ cells.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Cursor, Read, Seek};

use calamine::{
    Data, Dimensions, Ods, Range, Reader, SheetType, SheetVisible, Sheets, Xls, Xlsb, Xlsx,
    open_workbook_from_rs,
};
use mailmove_model::human_size;

use crate::detect::WorkbookKind;
use crate::limits::{self, Limits};
use crate::table::{Cell, ColumnNaming, Row, Table};
use crate::{ImportError, group_digits};

pub(crate) fn read(
    name: &str,
    kind: WorkbookKind,
    bytes: &[u8],
    limits: Limits,
) -> Result<Table, ImportError> {
    // calamine parses every sheet of these as a dense grid when it opens them.
    match kind {
        WorkbookKind::Xls if !limits.dense_workbooks => {
            return Err(dense_refused(name, "an Excel 97-2003 workbook (.xls)"));
        }
        WorkbookKind::Ods if !limits.dense_workbooks => {
            return Err(dense_refused(name, "an OpenDocument spreadsheet (.ods)"));
        }
        WorkbookKind::Xls => {}
        _ => check_archive(name, bytes)?,
    }
    let mut workbook = open(name, kind, bytes, limits)?;
    let Some(sheet) = first_worksheet(&workbook) else {
        return Ok(Table {
            rows: Vec::new(),
            naming: ColumnNaming::Lettered { first_column: 0 },
        });
    };
    let unreadable = |error: &dyn fmt::Display| {
        ImportError::Unreadable(format!(
            "`{name}`: worksheet `{sheet}` could not be read: {error}"
        ))
    };
    let mut cells = SparseCells::new(name, limits);
    match &mut workbook {
        Sheets::Xlsx(xlsx) => {
            let mut reader = xlsx
                .worksheet_cells_reader(&sheet)
                .map_err(|error| unreadable(&error))?;
            cells.check_dimension(reader.dimensions())?;
            while let Some(cell) = reader.next_cell().map_err(|error| unreadable(&error))? {
                cells.add(cell.get_position(), Data::from(cell.get_value().clone()))?;
            }
        }
        Sheets::Xlsb(xlsb) => {
            let mut reader = xlsb
                .worksheet_cells_reader(&sheet)
                .map_err(|error| unreadable(&error))?;
            cells.check_dimension(reader.dimensions())?;
            while let Some(cell) = reader.next_cell().map_err(|error| unreadable(&error))? {
                cells.add(cell.get_position(), Data::from(cell.get_value().clone()))?;
            }
        }
        // XLS and ODS: only as a dense range, where `limits.dense_workbooks` allows it.
        other => {
            let range = other
                .worksheet_range(&sheet)
                .map_err(|error| unreadable(&error))?;
            return Ok(table_from_range(&range));
        }
    }
    Ok(cells.into_table())
}

fn dense_refused(name: &str, what: &str) -> ImportError {
    ImportError::UnsupportedFormat(format!(
        "`{name}` is {what}, which is not taken here: save the mailbox list as an Excel \
         workbook (.xlsx) or as CSV (.csv)"
    ))
}

/// Refuses an archive whose parts would inflate beyond the limits, before any is parsed,
/// by the sizes its central directory declares. A part that lies about its size is
/// stopped by the ZIP reader once it inflates past its declaration (an error while
/// calamine reads it), so the declarations bound what is inflated.
fn check_archive(name: &str, bytes: &[u8]) -> Result<(), ImportError> {
    let damaged = |error: &dyn fmt::Display| {
        ImportError::Unreadable(format!("`{name}` is a damaged ZIP archive: {error}"))
    };
    let Ok(mut archive) = zip::ZipArchive::new(Cursor::new(bytes)) else {
        // Not a ZIP archive at all: calamine cannot open it either, and says so in the
        // words of the format the name promised.
        return Ok(());
    };
    if archive.len() > limits::MAX_ARCHIVE_ENTRIES {
        return Err(ImportError::TooLarge(format!(
            "`{name}` holds {} parts, more than the {} a workbook may have",
            group_digits(archive.len() as u64),
            group_digits(limits::MAX_ARCHIVE_ENTRIES as u64)
        )));
    }
    let part_too_large = |part: &str, size: &str| {
        ImportError::TooLarge(format!(
            "`{name}`: its part `{part}` unpacks to {size}, more than the {} one part of a \
             workbook may have",
            human_size(limits::MAX_ENTRY_BYTES)
        ))
    };
    let mut total: u64 = 0;
    for index in 0..archive.len() {
        let entry = archive.by_index_raw(index).map_err(|e| damaged(&e))?;
        let part = entry.name().map_err(|e| damaged(&e))?.into_owned();
        if entry.size() > limits::MAX_ENTRY_BYTES {
            return Err(part_too_large(&part, &human_size(entry.size())));
        }
        total = total.saturating_add(entry.size());
        if total > limits::MAX_ARCHIVE_BYTES {
            return Err(ImportError::TooLarge(format!(
                "`{name}` unpacks to more than {}, the most a workbook may unpack to",
                human_size(limits::MAX_ARCHIVE_BYTES)
            )));
        }
    }
    Ok(())
}

/// The cells of a worksheet as they are read, kept by row: only cells with a value are
/// stored, so memory follows what the file holds, never the rectangle it spans.
struct SparseCells<'a> {
    name: &'a str,
    limits: Limits,
    /// Each row's width from column A, and its cells.
    rows: BTreeMap<u32, (u64, Vec<(u32, Cell)>)>,
    cells: usize,
    first_column: u32,
    /// The cells of the grid these rows make (each row as wide as its last value).
    grid: u64,
}

impl<'a> SparseCells<'a> {
    fn new(name: &'a str, limits: Limits) -> SparseCells<'a> {
        SparseCells {
            name,
            limits,
            rows: BTreeMap::new(),
            cells: 0,
            first_column: u32::MAX,
            grid: 0,
        }
    }

    /// The worksheet's `<dimension ref=...>`: what the file says it spans.
    fn check_dimension(&self, dimension: Dimensions) -> Result<(), ImportError> {
        let area = u64::from(dimension.end.0.saturating_sub(dimension.start.0)) + 1;
        let area = area * (u64::from(dimension.end.1.saturating_sub(dimension.start.1)) + 1);
        if area > self.limits.max_grid_cells() {
            return Err(ImportError::TooLarge(format!(
                "`{}`: the worksheet spans {} cells ({}), more than the {} a list of {} \
                 mailboxes may span",
                self.name,
                group_digits(area),
                span_name(dimension),
                group_digits(self.limits.max_grid_cells()),
                group_digits(self.limits.max_mailboxes as u64)
            )));
        }
        Ok(())
    }

    fn add(&mut self, (row, column): (u32, u32), data: Data) -> Result<(), ImportError> {
        if data == Data::Empty {
            return Ok(());
        }
        self.cells += 1;
        if self.cells > self.limits.max_cells() {
            return Err(ImportError::TooLarge(format!(
                "`{}` has more than {} cells with a value, more than a list of {} mailboxes \
                 needs",
                self.name,
                group_digits(self.limits.max_cells() as u64),
                group_digits(self.limits.max_mailboxes as u64)
            )));
        }
        if !self.rows.contains_key(&row) && self.rows.len() >= self.limits.max_rows() {
            return Err(crate::too_many_mailboxes(self.limits));
        }
        self.first_column = self.first_column.min(column);
        let (width, cells) = self.rows.entry(row).or_default();
        cells.push((column, cell_from_data(&data)));
        // Widths are measured from column A, which over-counts when the data starts
        // further right: the bound only has to be safe.
        let wider = (*width).max(u64::from(column) + 1);
        self.grid += wider - *width;
        *width = wider;
        if self.grid > self.limits.max_grid_cells() {
            return Err(ImportError::TooLarge(format!(
                "`{}`: its cells spread over {} columns and rows, more than a list of {} \
                 mailboxes may (keep the list in the first columns of the worksheet)",
                self.name,
                group_digits(self.grid),
                group_digits(self.limits.max_mailboxes as u64)
            )));
        }
        Ok(())
    }

    fn into_table(self) -> Table {
        let first_column = if self.rows.is_empty() {
            0
        } else {
            self.first_column
        };
        let rows = self
            .rows
            .into_iter()
            .map(|(row, (_, cells))| {
                let width = cells
                    .iter()
                    .map(|(column, _)| column - first_column + 1)
                    .max()
                    .unwrap_or(0);
                let mut line = vec![Cell::Text(String::new()); width as usize];
                for (column, cell) in cells {
                    line[(column - first_column) as usize] = cell;
                }
                Row {
                    // A worksheet has at most 1,048,576 rows, so the number fits.
                    line: row as usize + 1,
                    cells: line,
                }
            })
            .collect();
        Table {
            rows,
            naming: ColumnNaming::Lettered { first_column },
        }
    }
}

/// `A1:XFD1048576`, as a spreadsheet names a rectangle.
fn span_name(dimension: Dimensions) -> String {
    let corner = |(row, column): (u32, u32)| {
        format!(
            "{}{}",
            crate::table::column_letters(u64::from(column)),
            u64::from(row) + 1
        )
    };
    format!("{}:{}", corner(dimension.start), corner(dimension.end))
}

type Workbook<'a> = Sheets<Cursor<&'a [u8]>>;

fn open<'a>(
    name: &str,
    kind: WorkbookKind,
    bytes: &'a [u8],
    limits: Limits,
) -> Result<Workbook<'a>, ImportError> {
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
            .or_else(|error| {
                if !limits.dense_workbooks {
                    return Err(calamine::Error::Xlsx(error));
                }
                open_workbook_from_rs::<Ods<_>, _>(cursor.clone())
                    .map(Sheets::Ods)
                    .map_err(calamine::Error::Ods)
            })
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
