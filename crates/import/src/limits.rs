//! How large a mailbox list may be, checked before anything is allocated in proportion
//! to what the file claims: a workbook is a ZIP archive whose parts may inflate a
//! thousandfold, and whose cells may sit anywhere on a grid of 1,048,576 × 16,384.

/// The sizes a mailbox list must keep to; [`Limits::UPLOAD`] for the portal,
/// [`Limits::FILE`] for a file the operator names on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Mailboxes (rows below the header, blank rows aside) in one list.
    pub max_mailboxes: usize,
    /// Whether XLS and ODS workbooks are read. calamine reads them only as a dense grid
    /// (XLS: every sheet when the file is opened, up to 65,536 × 256 cells each; ODS: up
    /// to 10⁸ cells from repeat counts), which a file of a few kilobytes can make
    /// gigabytes; XLSX, XLSB and CSV are read without such a grid.
    pub dense_workbooks: bool,
}

impl Limits {
    /// A spreadsheet uploaded to the portal, or the rows of one form post.
    pub const UPLOAD: Limits = Limits {
        max_mailboxes: 5_000,
        dense_workbooks: false,
    };
    /// A file named on the command line by the operator.
    pub const FILE: Limits = Limits {
        max_mailboxes: 100_000,
        dense_workbooks: true,
    };

    /// Rows with a value, the header included.
    pub(crate) fn max_rows(self) -> usize {
        self.max_mailboxes + 1
    }

    /// Cells holding a value: 32 per row allows the template's seven columns and notes.
    pub(crate) fn max_cells(self) -> usize {
        self.max_rows() * 32
    }

    /// Cells of the grid built from those rows (each row as wide as its last value), and
    /// of a worksheet's declared dimension: 64 columns per row.
    pub(crate) fn max_grid_cells(self) -> u64 {
        self.max_rows() as u64 * 64
    }
}

/// Parts of a workbook archive: a real one has a few dozen.
pub(crate) const MAX_ARCHIVE_ENTRIES: usize = 1_000;
/// What one part of a workbook may inflate to: a worksheet of 5,000 mailboxes is about
/// 2 MB, and its shared strings as much.
pub(crate) const MAX_ENTRY_BYTES: u64 = 16 * 1024 * 1024;
/// What all parts of a workbook may inflate to together.
pub(crate) const MAX_ARCHIVE_BYTES: u64 = 64 * 1024 * 1024;
