//! The deterministic corpus the benchmark copies: which message goes in which folder,
//! with which size, flags, keywords and arrival date. The same seed always gives the
//! same bytes, so figures from different days are measured on the same mail.

use mailmove_testkit::messages;

/// A folder of the corpus: the raw (modified UTF-7) name used on the wire, and the
/// name as people read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Folder {
    pub raw: &'static str,
    pub display: &'static str,
}

/// The five folders, in creation order (a parent before its child), with their share
/// of a 2,000-message mailbox.
pub const FOLDERS: [(Folder, usize); 5] = [
    (
        Folder {
            raw: "INBOX",
            display: "INBOX",
        },
        875,
    ),
    (
        Folder {
            raw: "Sent",
            display: "Sent",
        },
        434,
    ),
    (
        Folder {
            raw: "Archive",
            display: "Archive",
        },
        198,
    ),
    (
        Folder {
            raw: "Archive/2023",
            display: "Archive/2023",
        },
        292,
    ),
    (
        // "Données clients": é is U+00E9, "AOk" in modified base64.
        Folder {
            raw: "Donn&AOk-es clients",
            display: "Données clients",
        },
        201,
    ),
];

/// Out of 2,000 messages: 11 of 5–10 MB and 240 of 100 KB–1 MB with a base64
/// attachment; the rest are 2–40 KB of text.
const BIG_PER_2000: usize = 11;
const MEDIUM_PER_2000: usize = 240;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// text/plain, total size about `size`.
    Text,
    /// multipart with an attachment, total size about `size`.
    Attachment,
}

/// One message to seed: where it goes and how to build its bytes.
#[derive(Debug, Clone)]
pub struct Planned {
    /// Index into `folders` of the owning [`Mailbox`].
    pub folder: usize,
    pub flags: Vec<&'static str>,
    /// INTERNALDATE, e.g. `07-Mar-2021 14:03:09 +0200`.
    pub date: String,
    message_id: String,
    kind: Kind,
    size: usize,
    seed: u64,
}

impl Planned {
    /// The message's bytes (CRLF, deterministic). Built on demand so a 200 MiB
    /// corpus never sits in memory at once.
    pub fn body(&self) -> Vec<u8> {
        match self.kind {
            // The headers and MIME lines of `messages::simple` take about 250 bytes.
            Kind::Text => messages::simple(
                &self.message_id,
                "Benchmark message",
                self.size.saturating_sub(250),
            ),
            // base64 in 76-character lines: 78 bytes on the wire per 57 raw bytes,
            // plus about 700 bytes of headers and MIME boundaries.
            Kind::Attachment => messages::with_attachment(
                &self.message_id,
                self.size.saturating_sub(700) / 78 * 57,
                self.seed,
            ),
        }
    }
}

/// The plan of one mailbox (one user).
#[derive(Debug, Clone)]
pub struct Mailbox {
    pub folders: Vec<Folder>,
    pub messages: Vec<Planned>,
}

impl Mailbox {
    /// `count` messages spread over the five folders in the proportions of the
    /// 2,000-message reference mailbox, with the reference mix of sizes.
    pub fn standard(seed: u64, count: usize) -> Mailbox {
        let mut rng = SplitMix64(seed);
        // Folder per message: exact proportions, the rounding remainder to INBOX.
        let mut folder_of: Vec<usize> = Vec::with_capacity(count);
        for (index, (_, share)) in FOLDERS.iter().enumerate().skip(1) {
            folder_of.extend(std::iter::repeat_n(index, count * share / 2000));
        }
        let inbox = count - folder_of.len();
        folder_of.extend(std::iter::repeat_n(0, inbox));
        shuffle(&mut folder_of, &mut rng);

        // Size class per message: the first `big` of a shuffled order are big, the
        // next `medium` are medium.
        let big = count * BIG_PER_2000 / 2000;
        let medium = count * MEDIUM_PER_2000 / 2000;
        let mut order: Vec<usize> = (0..count).collect();
        shuffle(&mut order, &mut rng);
        let mut class = vec![0u8; count];
        for (rank, &index) in order.iter().enumerate() {
            class[index] = if rank < big {
                2
            } else if rank < big + medium {
                1
            } else {
                0
            };
        }

        let messages = (0..count)
            .map(|i| {
                let (kind, size) = match class[i] {
                    2 => (Kind::Attachment, 5_000_000 + rng.below(5_000_001) as usize),
                    1 => (Kind::Attachment, log_uniform(&mut rng, 100_000, 1_000_000)),
                    _ => (Kind::Text, 2_000 + rng.below(38_001) as usize),
                };
                planned(&mut rng, seed, i, folder_of[i], kind, size)
            })
            .collect();
        Mailbox {
            folders: FOLDERS.iter().map(|(folder, _)| *folder).collect(),
            messages,
        }
    }

    /// One INBOX of `small` text messages of 2–40 KB with one message of about
    /// `large_bytes` (an attachment) in the middle: the memory case.
    pub fn with_one_large(seed: u64, small: usize, large_bytes: usize) -> Mailbox {
        let mut rng = SplitMix64(seed);
        let mut messages = Vec::with_capacity(small + 1);
        for i in 0..=small {
            let (kind, size) = if i == small / 2 {
                (Kind::Attachment, large_bytes)
            } else {
                (Kind::Text, 2_000 + rng.below(38_001) as usize)
            };
            messages.push(planned(&mut rng, seed, i, 0, kind, size));
        }
        Mailbox {
            folders: vec![FOLDERS[0].0],
            messages,
        }
    }

    /// How many messages each folder holds, in folder order.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.folders.len()];
        for message in &self.messages {
            counts[message.folder] += 1;
        }
        counts
    }
}

fn planned(
    rng: &mut SplitMix64,
    seed: u64,
    index: usize,
    folder: usize,
    kind: Kind,
    size: usize,
) -> Planned {
    let mut flags = Vec::new();
    // Independent draws, so every combination occurs.
    for (flag, percent) in [
        ("\\Seen", 70),
        ("\\Answered", 15),
        ("\\Flagged", 5),
        ("$Forwarded", 8),
        ("ProjectX", 5),
    ] {
        if rng.below(100) < percent {
            flags.push(flag);
        }
    }
    Planned {
        folder,
        flags,
        date: internal_date(rng),
        message_id: format!("bench-{seed}-{index}@mailmove.example"),
        kind,
        size,
        seed: seed.wrapping_mul(1_000_003).wrapping_add(index as u64),
    }
}

/// A date between 2019 and 2024 in one of a few zones, as IMAP writes it.
fn internal_date(rng: &mut SplitMix64) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const ZONES: [&str; 5] = ["+0000", "+0100", "+0200", "-0500", "+0530"];
    let year = 2019 + rng.below(6);
    let month = MONTHS[rng.below(12) as usize];
    // Up to the 28th, valid in every month.
    let day = 1 + rng.below(28);
    let (hour, minute, second) = (rng.below(24), rng.below(60), rng.below(60));
    let zone = ZONES[rng.below(ZONES.len() as u64) as usize];
    format!("{day:02}-{month}-{year} {hour:02}:{minute:02}:{second:02} {zone}")
}

/// Sizes spread evenly over the orders of magnitude between `low` and `high`.
fn log_uniform(rng: &mut SplitMix64, low: usize, high: usize) -> usize {
    let fraction = rng.below(1_000_001) as f64 / 1_000_000.0;
    let (low, high) = (low as f64, high as f64);
    (low * (high / low).powf(fraction)) as usize
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// SplitMix64: deterministic on every platform and version, which a library RNG does
/// not promise.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A value in `0..bound` (the tiny modulo bias does not matter here).
    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_mailbox_has_the_reference_shape() {
        let mailbox = Mailbox::standard(1, 2000);
        assert_eq!(mailbox.counts(), vec![875, 434, 198, 292, 201]);
        let sizes: Vec<usize> = mailbox.messages.iter().map(|m| m.size).collect();
        assert_eq!(sizes.iter().filter(|&&s| s >= 5_000_000).count(), 11);
        assert_eq!(
            sizes
                .iter()
                .filter(|&&s| (100_000..=1_000_000).contains(&s))
                .count(),
            240
        );
        assert!(sizes.iter().all(|&s| s >= 2_000));
    }

    #[test]
    fn plans_are_deterministic() {
        let a = Mailbox::standard(7, 300);
        let b = Mailbox::standard(7, 300);
        assert_eq!(a.counts(), b.counts());
        for (x, y) in a.messages.iter().zip(&b.messages) {
            assert_eq!(x.date, y.date);
            assert_eq!(x.flags, y.flags);
            assert_eq!(x.body(), y.body());
        }
    }

    #[test]
    fn bodies_are_close_to_the_planned_size() {
        let mailbox = Mailbox::standard(3, 200);
        for message in &mailbox.messages {
            let len = message.body().len() as f64;
            let planned = message.size as f64;
            assert!((len / planned - 1.0).abs() < 0.05, "{len} vs {planned}");
        }
    }

    #[test]
    fn large_message_sits_in_the_middle() {
        let mailbox = Mailbox::with_one_large(5, 10, 3_000_000);
        assert_eq!(mailbox.messages.len(), 11);
        assert!(mailbox.messages[5].body().len() > 2_900_000);
        assert!(mailbox.messages[4].body().len() < 41_000);
    }
}
