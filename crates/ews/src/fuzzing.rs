//! One entry point for the fuzz target in `fuzz/`: the bytes of an answer go through
//! the reader the client uses (streamed XML, MIME content decoded as it arrives and
//! bounded) and then through every reader of what an answer holds. Not for programs.

use crate::response;
use crate::xml::{Document, read_document_within};

/// Reads `bytes` as an EWS answer, keeping at most `max_mime` bytes of MIME content
/// per item, and runs every answer reader over it, in every place each may be given.
/// Returns how many items of MIME content were read. Whatever the bytes, it returns:
/// no panic, no unbounded memory.
pub async fn read_answer(bytes: &[u8], max_mime: u64) -> usize {
    let Ok(Document { root, mut blobs }) = read_document_within(bytes, max_mime).await else {
        return 0;
    };
    let _ = response::fault(&root);
    let mut read = 0;
    if let Ok(messages) = response::messages(&root) {
        for message in &messages {
            let _ = (
                message.is_busy(),
                message.to_error(),
                message.to_item_error(),
            );
            let node = message.node;
            let _ = response::folders_in(node);
            for folder in node.children.iter().chain(std::iter::once(node)) {
                let _ = response::paging(folder);
                let _ = response::item_summaries(folder);
            }
            let _ = response::item_ids(node, "Items");
            let _ = response::sync_page(node);
            if response::mime_item(&mut blobs, node, max_mime).is_ok() {
                read += 1;
            }
        }
    }
    let _ = response::single(&root);
    read
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target's entry on stable: a GetItem answer, the same with its MIME
    /// content over the bound, and bytes that are no answer at all.
    #[tokio::test]
    async fn the_fuzz_entry_reads_answers_and_refuses_garbage() {
        let answer = |mime: &str| {
            format!(
                r#"<s:Envelope xmlns:s="s"><s:Body><m:GetItemResponse><m:ResponseMessages><m:GetItemResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Items><t:Message><t:MimeContent CharacterSet="UTF-8">{mime}</t:MimeContent><t:ItemId Id="I1"/></t:Message></m:Items></m:GetItemResponseMessage></m:ResponseMessages></m:GetItemResponse></s:Body></s:Envelope>"#
            )
        };
        assert_eq!(
            read_answer(answer("U3ViamVjdDogaGkNCg0K").as_bytes(), 1024).await,
            1
        );
        let big = "QUJD".repeat(1000);
        assert_eq!(read_answer(answer(&big).as_bytes(), 1024).await, 0);
        for garbage in [
            &b""[..],
            b"<",
            b"<a><b></a>",
            b"\xff\xfe<x",
            b"<MimeContent>=====",
        ] {
            assert_eq!(read_answer(garbage, 1024).await, 0);
        }
    }
}
