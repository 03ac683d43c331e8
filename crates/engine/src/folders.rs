//! The folder plan: which source folder goes to which destination folder. A pure
//! function of both folder lists and the user's rules, so it is tested without servers.
//!
//! Names are compared and shown in a normalised form: the namespace prefix removed,
//! modified UTF-7 decoded, levels joined with `/` (`Archive/2023`, `INBOX`). That is
//! the form `--include`, `--exclude` and `--map` use.

use mailmove_model::mutf7;
use regex::Regex;

use crate::connector::FolderEntry;

/// Special-use roles that map by role (RFC 6154). `\All` and `\Flagged` are views of
/// other folders and map by name like any folder.
const ROLES: [&str; 5] = ["\\Sent", "\\Drafts", "\\Trash", "\\Junk", "\\Archive"];

/// One server's folders as LIST and NAMESPACE describe them.
#[derive(Clone, Debug, Default)]
pub struct FolderTree {
    pub entries: Vec<FolderEntry>,
    /// The personal namespace prefix (`INBOX.` on Courier-style servers) and delimiter.
    pub prefix: Vec<u8>,
    pub delimiter: Option<char>,
    pub subscribed: Vec<Vec<u8>>,
}

impl FolderTree {
    fn delimiter(&self) -> char {
        self.delimiter
            .or_else(|| self.entries.iter().find_map(|e| e.delimiter))
            .unwrap_or('/')
    }

    /// The normalised levels of a raw name.
    pub fn levels(&self, raw: &[u8]) -> Vec<String> {
        if raw.eq_ignore_ascii_case(b"INBOX") {
            return vec!["INBOX".to_string()];
        }
        let delimiter = self.delimiter();
        let relative = if !self.prefix.is_empty()
            && raw.starts_with(&self.prefix)
            && raw.len() > self.prefix.len()
        {
            &raw[self.prefix.len()..]
        } else {
            raw
        };
        let mut levels: Vec<String> = relative
            .split(|&b| b as char == delimiter)
            .map(mutf7::decode_lenient)
            .collect();
        if levels
            .first()
            .is_some_and(|l| l.eq_ignore_ascii_case("INBOX"))
        {
            levels[0] = "INBOX".to_string();
        }
        levels
    }

    /// The raw name for normalised levels on this server.
    pub fn raw_name(&self, levels: &[String]) -> Vec<u8> {
        let delimiter = self.delimiter();
        if levels.len() == 1 && levels[0].eq_ignore_ascii_case("INBOX") {
            return b"INBOX".to_vec();
        }
        let encoded: Vec<String> = levels
            .iter()
            .map(|level| mutf7::encode(&level.replace(delimiter, "_")))
            .collect();
        let joined = encoded.join(&delimiter.to_string());
        let prefix = String::from_utf8_lossy(&self.prefix).into_owned();
        // `INBOX/x` on a server whose prefix is `INBOX.` is `INBOX.x`, not `INBOX.INBOX.x`.
        if !prefix.is_empty()
            && levels.first().is_some_and(|l| l == "INBOX")
            && prefix
                .trim_end_matches(delimiter)
                .eq_ignore_ascii_case("INBOX")
        {
            return joined.into_bytes();
        }
        format!("{prefix}{joined}").into_bytes()
    }

    fn role_folder(&self, role: &str) -> Option<&FolderEntry> {
        self.entries.iter().find(|e| e.has_attribute(role))
    }

    pub fn exists(&self, raw: &[u8]) -> bool {
        self.entries.iter().any(|e| {
            e.name == raw && !e.has_attribute("\\Noselect") && !e.has_attribute("\\NonExistent")
        })
    }
}

/// The user's folder rules, validated.
#[derive(Clone, Debug, Default)]
pub struct FolderRules {
    pub include: Vec<Regex>,
    pub exclude: Vec<Regex>,
    /// (source name, destination name), both normalised.
    pub map: Vec<(String, String)>,
}

impl FolderRules {
    pub fn parse_map(rule: &str) -> Result<(String, String), String> {
        match rule.split_once('=') {
            Some((source, dest)) if !source.trim().is_empty() && !dest.trim().is_empty() => {
                Ok((source.trim().to_string(), dest.trim().to_string()))
            }
            _ => Err(format!(
                "the folder rule `{rule}` is not of the form 'SOURCE=DEST'"
            )),
        }
    }

    fn included(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|r| r.is_match(name)))
            && !self.exclude.iter().any(|r| r.is_match(name))
    }
}

/// Where one source folder goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FolderMapping {
    pub source_raw: Vec<u8>,
    pub source_name: String,
    pub dest_raw: Vec<u8>,
    pub dest_name: String,
    /// The destination folder must be created.
    pub create: bool,
    /// Subscribed at the source, so subscribed at the destination.
    pub subscribe: bool,
    pub role: Option<String>,
    /// Why the destination will not hold this folder under any name tried: its
    /// messages are then failed items with this reason.
    pub refused: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderPlan {
    pub mappings: Vec<FolderMapping>,
    /// Source folders left out by `--include`/`--exclude`, normalised.
    pub excluded: Vec<String>,
}

pub fn plan_folders(source: &FolderTree, dest: &FolderTree, rules: &FolderRules) -> FolderPlan {
    let mut plan = FolderPlan::default();
    let mut entries: Vec<&FolderEntry> = source
        .entries
        .iter()
        .filter(|e| !e.has_attribute("\\Noselect") && !e.has_attribute("\\NonExistent"))
        .collect();
    entries.sort_by_key(|e| (e.name.clone(),));
    entries.dedup_by(|a, b| a.name == b.name);
    for entry in entries {
        let levels = source.levels(&entry.name);
        let source_name = levels.join("/");
        if !rules.included(&source_name) {
            plan.excluded.push(source_name);
            continue;
        }
        let role = ROLES
            .iter()
            .find(|role| entry.has_attribute(role))
            .map(|r| r.to_string());
        let mapped = rules
            .map
            .iter()
            .find(|(from, _)| from == &source_name)
            .map(|(_, to)| to.clone());
        let dest_raw = match (&mapped, &role) {
            (Some(to), _) => dest.raw_name(&to.split('/').map(str::to_string).collect::<Vec<_>>()),
            (None, Some(role)) => match dest.role_folder(role) {
                Some(found) => found.name.clone(),
                None => dest.raw_name(&levels),
            },
            (None, None) => dest.raw_name(&levels),
        };
        let dest_name = dest.levels(&dest_raw).join("/");
        plan.mappings.push(FolderMapping {
            create: !dest.exists(&dest_raw),
            subscribe: source.subscribed.iter().any(|s| s == &entry.name),
            source_raw: entry.name.clone(),
            source_name,
            dest_raw,
            dest_name,
            role,
            refused: None,
        });
    }
    // Parents before children, INBOX first: the order folders are created and copied.
    plan.mappings.sort_by(|a, b| {
        (a.source_name != "INBOX", a.source_name.clone())
            .cmp(&(b.source_name != "INBOX", b.source_name.clone()))
    });
    plan
}

/// Characters some servers refuse in a folder name (Cyrus and Courier refuse `/`
/// under their `.` hierarchy; Exchange and others refuse the rest).
const RISKY: &[char] = &[
    '/', '\\', ':', '*', '?', '"', '<', '>', '|', '%', '&', '~', '#',
];
/// The longest level the last fallback keeps.
const SHORT_LEVEL: usize = 60;

/// Other names to try, in order, for a folder whose name (as levels) the destination
/// refused: the risky characters replaced by `_`; then also dots and non-ASCII
/// letters; then every level joined into one (for servers that limit depth); then that
/// one level cut to 60 characters. Each differs from the name before it.
pub fn fallback_names(levels: &[String]) -> Vec<Vec<String>> {
    let clean = |level: &str, strict: bool| -> String {
        let replaced: String = level
            .chars()
            .map(|c| {
                let refused =
                    RISKY.contains(&c) || c.is_control() || (strict && (c == '.' || !c.is_ascii()));
                if refused { '_' } else { c }
            })
            .collect();
        let trimmed = replaced.trim_matches(|c: char| c == ' ' || c == '.');
        if trimmed.is_empty() {
            "_".to_string()
        } else {
            trimmed.to_string()
        }
    };
    let gentle: Vec<String> = levels.iter().map(|l| clean(l, false)).collect();
    let strict: Vec<String> = levels.iter().map(|l| clean(l, true)).collect();
    let flat = vec![strict.join("_")];
    let short = vec![flat[0].chars().take(SHORT_LEVEL).collect::<String>()];
    let mut names: Vec<Vec<String>> = Vec::new();
    for candidate in [gentle, strict, flat, short] {
        if candidate != levels && !names.contains(&candidate) {
            names.push(candidate);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_names_fall_back_from_gentle_to_flat_and_short() {
        let levels = |names: &[&str]| names.iter().map(|l| l.to_string()).collect::<Vec<_>>();
        assert_eq!(
            fallback_names(&levels(&["Projects", "TCP/IP"])),
            vec![
                levels(&["Projects", "TCP_IP"]),
                levels(&["Projects_TCP_IP"])
            ]
        );
        let names = fallback_names(&levels(&["Données", "v1.2 ", "a&b"]));
        assert_eq!(names[0], levels(&["Données", "v1.2", "a_b"]));
        assert_eq!(names[1], levels(&["Donn_es", "v1_2", "a_b"]));
        assert_eq!(names[2], levels(&["Donn_es_v1_2_a_b"]));
        let long = "x".repeat(100);
        let names = fallback_names(&levels(&["a", &long]));
        assert_eq!(names.last().unwrap()[0].len(), SHORT_LEVEL);
        // A name with nothing to change still gets the flat form when it is deep.
        assert_eq!(
            fallback_names(&levels(&["a", "b", "c"])),
            vec![levels(&["a_b_c"])]
        );
        assert!(fallback_names(&levels(&["plain"])).is_empty());
    }

    fn entry(name: &str, delimiter: char, attributes: &[&str]) -> FolderEntry {
        FolderEntry {
            attributes: attributes.iter().map(|a| a.to_string()).collect(),
            delimiter: Some(delimiter),
            name: name.as_bytes().to_vec(),
        }
    }

    fn courier_source() -> FolderTree {
        FolderTree {
            entries: vec![
                entry("INBOX", '.', &[]),
                entry("INBOX.Sent Messages", '.', &["\\Sent"]),
                entry("INBOX.Archive", '.', &[]),
                entry("INBOX.Archive.2023", '.', &[]),
                entry("INBOX.Donn&AOk-es &- co", '.', &[]),
                entry("INBOX.R&-D", '.', &[]),
                entry("INBOX.Empty", '.', &[]),
                entry("INBOX.Trash", '.', &["\\Trash"]),
            ],
            prefix: b"INBOX.".to_vec(),
            delimiter: Some('.'),
            subscribed: vec![b"INBOX.Archive".to_vec()],
        }
    }

    fn slash_dest() -> FolderTree {
        FolderTree {
            entries: vec![
                entry("INBOX", '/', &[]),
                entry("Sent", '/', &["\\Sent"]),
                entry("Deleted Items", '/', &["\\Trash"]),
            ],
            prefix: Vec::new(),
            delimiter: Some('/'),
            subscribed: Vec::new(),
        }
    }

    fn names(plan: &FolderPlan) -> Vec<(String, String, bool)> {
        plan.mappings
            .iter()
            .map(|m| {
                (
                    m.source_name.clone(),
                    String::from_utf8(m.dest_raw.clone()).unwrap(),
                    m.create,
                )
            })
            .collect()
    }

    #[test]
    fn courier_tree_lands_on_a_slash_server_with_roles_mapped() {
        let plan = plan_folders(&courier_source(), &slash_dest(), &FolderRules::default());
        assert_eq!(
            names(&plan),
            vec![
                ("INBOX".into(), "INBOX".into(), false),
                ("Archive".into(), "Archive".into(), true),
                ("Archive/2023".into(), "Archive/2023".into(), true),
                ("Données & co".into(), "Donn&AOk-es &- co".into(), true),
                ("Empty".into(), "Empty".into(), true),
                ("R&D".into(), "R&-D".into(), true),
                ("Sent Messages".into(), "Sent".into(), false),
                ("Trash".into(), "Deleted Items".into(), false),
            ]
        );
        let archive = &plan.mappings[1];
        assert!(archive.subscribe);
        assert!(!plan.mappings[2].subscribe);
    }

    #[test]
    fn slash_tree_lands_under_a_courier_prefix() {
        let mut dest = courier_source();
        dest.entries.retain(|e| e.name == b"INBOX");
        let plan = plan_folders(&slash_dest(), &dest, &FolderRules::default());
        assert_eq!(
            names(&plan),
            vec![
                ("INBOX".into(), "INBOX".into(), false),
                ("Deleted Items".into(), "INBOX.Deleted Items".into(), true),
                ("Sent".into(), "INBOX.Sent".into(), true),
            ]
        );
    }

    #[test]
    fn a_delimiter_inside_a_name_is_replaced() {
        let source = slash_dest();
        let mut source = source;
        source.entries.push(entry("v1.2 notes", '/', &[]));
        let plan = plan_folders(&source, &courier_source(), &FolderRules::default());
        assert!(names(&plan).contains(&("v1.2 notes".into(), "INBOX.v1_2 notes".into(), true)));
    }

    #[test]
    fn include_exclude_and_map() {
        let rules = FolderRules {
            include: vec![Regex::new("^(INBOX|Archive)").unwrap()],
            exclude: vec![Regex::new("2023$").unwrap()],
            map: vec![("Archive".into(), "Old/Archive".into())],
        };
        let plan = plan_folders(&courier_source(), &slash_dest(), &rules);
        assert_eq!(
            names(&plan),
            vec![
                ("INBOX".into(), "INBOX".into(), false),
                ("Archive".into(), "Old/Archive".into(), true),
            ]
        );
        assert!(plan.excluded.contains(&"Archive/2023".to_string()));
        assert!(plan.excluded.contains(&"Trash".to_string()));
    }

    #[test]
    fn noselect_placeholders_are_not_copied() {
        let mut source = slash_dest();
        source
            .entries
            .push(entry("Projects", '/', &["\\Noselect", "\\HasChildren"]));
        source.entries.push(entry("Projects/A", '/', &[]));
        let plan = plan_folders(&source, &slash_dest(), &FolderRules::default());
        let sources: Vec<_> = plan
            .mappings
            .iter()
            .map(|m| m.source_name.as_str())
            .collect();
        assert!(sources.contains(&"Projects/A"));
        assert!(!sources.contains(&"Projects"));
    }
}
