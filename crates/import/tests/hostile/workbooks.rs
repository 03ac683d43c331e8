//! Hostile workbooks written by hand, part by part, so that each says what an attacker
//! chooses: cells at the far corner of the sheet, a dimension that lies or not, a shared
//! strings part that inflates a thousandfold, sizes in the ZIP directory that lie.

use std::io::{Cursor, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/><Override PartName="/xl/sharedStrings.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"/></Types>"#;

const ROOT_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;

const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#;

const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#;

/// A header and one mailbox in A1:B2 as inline strings, and a value in the last cell of
/// the sheet, `XFD1048576`; the sheet declares `dimension` (or none).
pub fn far_corner_workbook(dimension: Option<&str>) -> Vec<u8> {
    let dimension = dimension
        .map(|span| format!(r#"<dimension ref="{span}"/>"#))
        .unwrap_or_default();
    let inline = |cell: &str, text: &str| {
        format!(r#"<c r="{cell}" t="inlineStr"><is><t>{text}</t></is></c>"#)
    };
    let sheet = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{dimension}<sheetData><row r="1">{}{}</row><row r="2">{}{}</row><row r="1048576">{}</row></sheetData></worksheet>"#,
        inline("A1", "Source Email"),
        inline("B1", "Destination Email"),
        inline("A2", "a@old.example"),
        inline("B2", "a@new.example"),
        inline("XFD1048576", "x"),
    );
    archive(&sheet, 0)
}

/// A sheet of one header and one mailbox whose shared strings part holds `strings`
/// strings of 100 bytes, about `strings` × 118 bytes inflated.
pub fn shared_strings_bomb(strings: usize) -> Vec<u8> {
    let sheet = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><dimension ref="A1:B2"/><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Source Email</t></is></c><c r="B1" t="inlineStr"><is><t>Destination Email</t></is></c></row><row r="2"><c r="A2" t="inlineStr"><is><t>a@old.example</t></is></c><c r="B2" t="inlineStr"><is><t>a@new.example</t></is></c></row></sheetData></worksheet>"#;
    archive(sheet, strings)
}

/// Writes a shared strings part of `count` strings of 100 bytes, a piece at a time, so
/// that a bomb of gigabytes is built in little memory.
fn write_shared_strings(zip: &mut ZipWriter<Cursor<Vec<u8>>>, count: usize) {
    let head = format!(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="{count}" uniqueCount="{count}">"#
    );
    zip.write_all(head.as_bytes()).expect("write a part");
    let one = format!("<si><t>{}</t></si>", "x".repeat(100));
    let piece = one.repeat(1_000);
    for _ in 0..count / 1_000 {
        zip.write_all(piece.as_bytes()).expect("write a part");
    }
    for _ in 0..count % 1_000 {
        zip.write_all(one.as_bytes()).expect("write a part");
    }
    zip.write_all(b"</sst>").expect("write a part");
}

fn archive(sheet: &str, strings: usize) -> Vec<u8> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        // ZIP64 sizes only where they are needed: `declare_size` patches the 32-bit ones.
        .large_file(strings as u64 * 118 > u64::from(u32::MAX));
    for (part, text) in [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", ROOT_RELS),
        ("xl/workbook.xml", WORKBOOK),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
        ("xl/worksheets/sheet1.xml", sheet),
    ] {
        zip.start_file(part, options).expect("start a part");
        zip.write_all(text.as_bytes()).expect("write a part");
    }
    zip.start_file("xl/sharedStrings.xml", options)
        .expect("start a part");
    write_shared_strings(&mut zip, strings);
    zip.finish().expect("finish the archive").into_inner()
}

/// Makes the ZIP directory and the local header of `part` declare `size` bytes
/// inflated, whatever the part really inflates to.
pub fn declare_size(bytes: &mut [u8], part: &str, size: u32) {
    let name = part.as_bytes();
    let mut patched = 0;
    for offset in 0..bytes.len().saturating_sub(46) {
        let (signature, name_at, size_at) = match &bytes[offset..offset + 4] {
            b"PK\x03\x04" => (true, 30, 22),
            b"PK\x01\x02" => (true, 46, 24),
            _ => (false, 0, 0),
        };
        if !signature {
            continue;
        }
        let name_length_at = if name_at == 30 { 26 } else { 28 };
        let name_length = usize::from(u16::from_le_bytes([
            bytes[offset + name_length_at],
            bytes[offset + name_length_at + 1],
        ]));
        if bytes.get(offset + name_at..offset + name_at + name_length) == Some(name) {
            bytes[offset + size_at..offset + size_at + 4].copy_from_slice(&size.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(
        patched, 2,
        "the local header and the directory entry of {part}"
    );
}

/// The most memory this process has held, from `/proc/self/status`, in bytes.
pub fn peak_memory() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("VmHWM in /proc/self/status");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|number| number.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}
