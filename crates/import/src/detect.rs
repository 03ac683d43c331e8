//! Decides how to read an upload: by its first bytes when they are unambiguous (a ZIP or
//! an OLE container is a workbook whatever it is called), otherwise by its extension,
//! and text with no usable name is read as CSV.

use std::path::Path;

use crate::ImportError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    Delimited,
    Workbook(WorkbookKind),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorkbookKind {
    Xlsx,
    Xlsb,
    Ods,
    Xls,
    /// A ZIP archive whose name does not say which workbook it is: try each.
    AnyZip,
}

/// Every XLSX, XLSB and ODS file is a ZIP archive, and starts with a local file header.
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The OLE compound file that holds an `.xls` workbook, or an encrypted XLSX.
const OLE_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

pub(crate) fn detect(name: &str, bytes: &[u8]) -> Result<Format, ImportError> {
    let extension = Path::new(name)
        .extension()
        .map(|extension| extension.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();

    if bytes.starts_with(ZIP_MAGIC) {
        return Ok(Format::Workbook(match extension.as_str() {
            "xlsx" | "xlsm" => WorkbookKind::Xlsx,
            "xlsb" => WorkbookKind::Xlsb,
            "ods" => WorkbookKind::Ods,
            _ => WorkbookKind::AnyZip,
        }));
    }
    if bytes.starts_with(OLE_MAGIC) {
        if is_encrypted_office_document(bytes) {
            return Err(ImportError::Unreadable(format!(
                "`{name}` is protected with a password: remove it (in Excel: File > Info > \
                 Protect Workbook > Encrypt with Password, then clear the password) or save \
                 the list as CSV"
            )));
        }
        return Ok(Format::Workbook(WorkbookKind::Xls));
    }
    if bytes.is_empty() {
        // Whatever its name, an empty file is reported as empty, with the row rules.
        return Ok(Format::Delimited);
    }
    match extension.as_str() {
        "csv" | "txt" | "tsv" | "" => Ok(Format::Delimited),
        "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Err(ImportError::Unreadable(format!(
            "`{name}` is named like a workbook but its content is not one: open it in its \
             spreadsheet program and save it again as .xlsx or .csv"
        ))),
        _ if looks_like_text(bytes) => Ok(Format::Delimited),
        _ => Err(ImportError::UnsupportedFormat(format!(
            "`{name}` is neither CSV nor a spreadsheet: save the mailbox list as CSV (.csv) \
             or as an Excel workbook (.xlsx)"
        ))),
    }
}

/// Office stores an encrypted XLSX inside an OLE container with an `EncryptionInfo`
/// stream; its directory entry names the stream in UTF-16LE.
fn is_encrypted_office_document(bytes: &[u8]) -> bool {
    let marker: Vec<u8> = "EncryptionInfo"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    bytes
        .windows(marker.len())
        .any(|window| window == marker.as_slice())
}

/// UTF-8 or UTF-16 with a byte order mark, without NUL bytes in UTF-8.
fn looks_like_text(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"\xFF\xFE") || bytes.starts_with(b"\xFE\xFF") {
        return true;
    }
    let head = &bytes[..bytes.len().min(8192)];
    if head.contains(&0) {
        return false;
    }
    match std::str::from_utf8(head) {
        Ok(_) => true,
        // A multi-byte character cut at the end of the sample is still text.
        Err(error) => error.error_len().is_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zip(rest: &[u8]) -> Vec<u8> {
        [ZIP_MAGIC, rest].concat()
    }

    #[test]
    fn content_decides_when_it_is_a_container() {
        let cases: [(&str, Vec<u8>, Format); 6] = [
            (
                "list.xlsx",
                zip(b"..."),
                Format::Workbook(WorkbookKind::Xlsx),
            ),
            ("list.ods", zip(b"..."), Format::Workbook(WorkbookKind::Ods)),
            (
                "list.csv",
                zip(b"..."),
                Format::Workbook(WorkbookKind::AnyZip),
            ),
            (
                "upload",
                zip(b"..."),
                Format::Workbook(WorkbookKind::AnyZip),
            ),
            (
                "LIST.XLS",
                [OLE_MAGIC, b"..."].concat(),
                Format::Workbook(WorkbookKind::Xls),
            ),
            (
                "blob",
                [OLE_MAGIC, b"..."].concat(),
                Format::Workbook(WorkbookKind::Xls),
            ),
        ];
        for (name, bytes, format) in cases {
            assert_eq!(detect(name, &bytes).expect(name), format, "{name}");
        }
    }

    #[test]
    fn text_is_read_as_csv_when_the_name_does_not_say_otherwise() {
        for name in [
            "list.csv",
            "LIST.CSV",
            "list.txt",
            "upload",
            "",
            "list.csv.download",
        ] {
            assert_eq!(
                detect(name, b"Source Email\n").expect(name),
                Format::Delimited,
                "{name}"
            );
        }
    }

    #[test]
    fn a_workbook_name_on_other_content_is_unreadable() {
        let error = detect("list.xlsx", b"Source Email\n").expect_err("not a workbook");
        assert!(matches!(error, ImportError::Unreadable(_)), "{error}");
    }

    #[test]
    fn binary_content_under_another_name_is_unsupported() {
        let error = detect("photo.jpg", b"\xFF\xD8\xFF\xE0\x00\x10JFIF").expect_err("binary");
        assert!(
            matches!(error, ImportError::UnsupportedFormat(_)),
            "{error}"
        );
        assert!(error.to_string().contains("photo.jpg"), "{error}");
    }

    #[test]
    fn an_encrypted_workbook_is_named_as_such() {
        let marker: Vec<u8> = "EncryptionInfo"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let bytes = [OLE_MAGIC, &[0; 64], &marker].concat();
        let error = detect("list.xlsx", &bytes).expect_err("encrypted");
        assert!(
            error.to_string().contains("protected with a password"),
            "{error}"
        );
    }
}
