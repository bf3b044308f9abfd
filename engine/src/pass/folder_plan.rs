//! The folder plan: which source folders are copied to which target folders.
//!
//! Input is both sides' folder lists (names already decoded from mUTF-7 or UTF-8: encoding
//! is the protocol crate's job), each side's personal namespace prefix and hierarchy
//! separator, and the batch's options. Output is a [`FolderPlan`]: every source folder is
//! either copied to exactly one target folder, kept as hierarchy only, or excluded with a
//! reason; no two source folders share a target folder.
//!
//! # Names
//! A source name is split at the source separator into components, relative to the
//! personal namespace prefix (or to `UserRoot`, whose folder itself becomes INBOX), and
//! joined on the target with the target's prefix and separator. INBOX is matched ignoring
//! case and always maps to INBOX.
//!
//! # Special folders
//! Per [`SpecialUse`], one source folder is chosen (attribute first, then the well-known
//! names in their order) and mapped onto the target's existing folder of that use (chosen
//! the same way), so the target never gets a second "Sent". Subfolders follow:
//! `Sent Items/2019` → `<target Sent>/2019`. A use the target lacks keeps the source name.
//!
//! # A component that contains the target's separator
//! It stays one folder: each such character is replaced by a lookalike that is not a
//! separator — `.` by U+2024 ONE DOT LEADER (`․`), `/` by U+2215 DIVISION SLASH (`∕`), `\`
//! by U+29F5 REVERSE SOLIDUS OPERATOR (`⧵`), other ASCII by its fullwidth form — so a user
//! sees the name they had. The same applies to the characters in
//! [`PlanOptions::target_reserved_chars`] (e.g. `/` on a Dovecot Maildir++ target, which
//! cannot store it). A reversible escape (`%2E`) was rejected: it would also rewrite every
//! name containing the escape character, which users see. A lookalike is not injective (a
//! source may already hold `a․b` beside `a.b`), so collisions are resolved instead.
//!
//! # Collisions
//! Two source folders can still want one target name: the lookalike case above, a plain
//! source folder named like the target special folder another source folder maps onto,
//! `INBOX.INBOX` on a Maildir++ source, `Work` and `work` on a case-insensitive target
//! (the default assumption, see [`PlanOptions::target_case_insensitive`]). Folders claim
//! names in a fixed order — pinned (from an earlier pass), special folders and their
//! subfolders, INBOX, folders whose name needed no change, then the rest, then included
//! folders of other namespaces; by source path
//! within each — and a later claimant gets ` (2)`, ` (3)`, ... on its last component,
//! skipping every name another folder claims or would naturally take. The order depends
//! only on the listings, so the same input always gives the same plan.
//!
//! # Stability across passes
//! The plan depends on the source listing and on the target's special folders, not on
//! which other target folders exist, so a second pass over an unchanged source yields the
//! same plan. For stability when the source changes between passes (a new folder that
//! would win a collision), the engine stores [`FolderPlan::pins`] and passes them back in
//! [`PlanOptions::pinned`]: a pinned folder keeps its target whatever else appears.
//!
//! # Hierarchy only
//! `\Noselect` (and `\NonExistent`) folders hold no messages. They are reported as
//! hierarchy-only when a copied folder lies under them and excluded otherwise; a missing
//! parent is created only when [`PlanOptions::target_needs_explicit_parents`] says the
//! target does not create parents by itself (RFC 3501 lets a server do either).
//!
//! # Other namespaces
//! A folder under an other-users or shared namespace prefix (RFC 2342 NAMESPACE; the longer
//! prefix wins against the personal one, so `""` personal with `Shared/` shared works) or,
//! when the personal prefix is not empty, outside it, is someone else's: Cyrus's shared
//! folders and other users' trees, Dovecot's `shared/`, Courier's `#shared.`, Exchange's
//! public folders. Copying one would put the same folder into every mailbox of the batch,
//! so it is excluded ([`ExclusionReason::OutsidePersonalNamespace`]) unless
//! [`PlanOptions::inclusions`] names it; an included folder keeps its full source name
//! as its path (`Other Users/bob/Projects`), so it never lands on a personal folder.
//! It is never taken for a special folder. A server without NAMESPACE has only personal
//! folders.
//!
//! # UserRoot
//! With [`PlanOptions::user_root`] only the root and the folders under it are the user's
//! (the root is INBOX); a listing with neither fails the plan with
//! [`Error::UserRootMatchesNothing`]: a wrong root would otherwise pass as an empty
//! mailbox.
//!
//! Subscriptions are mirrored one way: a subscribed source folder is subscribed on the
//! target; nothing on the target is ever unsubscribed.

mod exclusion;
mod special_use;

use std::collections::{BTreeMap, HashMap, HashSet};

pub use exclusion::Exclusion;
pub use special_use::SpecialUse;

use crate::error::Error;

/// Attributes of a listed folder that matter for planning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderAttributes {
    /// `\Noselect` or `\NonExistent`: the name exists only as hierarchy.
    pub no_select: bool,
    /// `\NoInferiors`: the folder cannot have children.
    pub no_inferiors: bool,
    /// `\HasChildren`, as the server said; informational, the plan sees the listing itself.
    pub has_children: bool,
    /// RFC 6154 attributes, in the order listed.
    pub special_use: Vec<SpecialUse>,
}

impl FolderAttributes {
    /// Reads attribute atoms as a LIST response gives them (`\Noselect`, `\Sent`, ...),
    /// ignoring case and unknown attributes.
    pub fn from_atoms<'a>(atoms: impl IntoIterator<Item = &'a str>) -> Self {
        let mut attributes = Self::default();
        for atom in atoms {
            let is = |name: &str| atom.eq_ignore_ascii_case(name);
            if is("\\Noselect") || is("\\NonExistent") {
                attributes.no_select = true;
            } else if is("\\NoInferiors") {
                attributes.no_inferiors = true;
            } else if is("\\HasChildren") {
                attributes.has_children = true;
            } else if let Some(u) = SpecialUse::from_attribute(atom)
                && !attributes.special_use.contains(&u)
            {
                attributes.special_use.push(u);
            }
        }
        attributes
    }
}

/// One folder of a LIST response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListedFolder {
    /// The full name, decoded to UTF-8, as the server spells it.
    pub name: String,
    pub attributes: FolderAttributes,
    /// Whether the folder is subscribed (LIST-EXTENDED `\Subscribed`, or in LSUB).
    pub subscribed: bool,
}

impl ListedFolder {
    /// A selectable, unsubscribed folder with no special attributes.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

/// One side's folders and personal namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderListing {
    /// The server, for messages (the endpoint name or host).
    pub server: String,
    /// The personal namespace prefix, e.g. `""` or `"INBOX."` (NAMESPACE response).
    pub prefix: String,
    /// The hierarchy separator; `None` for a flat server (NIL delimiter).
    pub separator: Option<char>,
    /// The other users' and shared namespace prefixes (NAMESPACE), e.g. `user.`,
    /// `Other Users/`, `#shared.`; empty without NAMESPACE.
    pub foreign_prefixes: Vec<String>,
    /// The LIST commands the folders came from, for messages (`LIST "" "*"`).
    pub listed_with: String,
    pub folders: Vec<ListedFolder>,
}

/// What the batch asks of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanOptions {
    pub exclusions: Vec<Exclusion>,
    /// Folders outside the personal namespace to copy anyway, by full source name
    /// (`Other Users/bob/Projects`, `shared.Announcements`; globs allowed): each brings
    /// its subfolders, as an exclusion does. Special uses match nothing here.
    pub inclusions: Vec<Exclusion>,
    /// The source folder under which this user's folders live (Courier/Oracle virtual
    /// shared folders): only folders under it are migrated, the prefix stripped, and the
    /// folder itself, if selectable, is the user's INBOX.
    pub user_root: Option<String>,
    /// The target does not create missing parents on CREATE: emit them as hierarchy-only.
    pub target_needs_explicit_parents: bool,
    /// Treat target names that differ only in case as one (Exchange, and the safe default:
    /// two source folders are never merged into one target folder by case folding).
    pub target_case_insensitive: bool,
    /// Characters the target cannot store in a name besides its separator; they are
    /// replaced like the separator. Dovecot's Maildir++ layout refuses `/`, for example.
    pub target_reserved_chars: Vec<char>,
    /// Source name → target path from an earlier pass ([`FolderPlan::pins`]).
    pub pinned: BTreeMap<String, Vec<String>>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            exclusions: Vec::new(),
            inclusions: Vec::new(),
            user_root: None,
            target_needs_explicit_parents: false,
            target_case_insensitive: true,
            target_reserved_chars: Vec::new(),
            pinned: BTreeMap::new(),
        }
    }
}

/// A target folder name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TargetName {
    /// Components relative to the target's personal namespace (INBOX is `["INBOX"]`).
    pub path: Vec<String>,
    /// The full name with prefix and separator, decoded (the protocol crate encodes it).
    pub name: String,
}

/// A source folder whose messages go to one target folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCopy {
    /// The source folder's full name as listed.
    pub source: String,
    pub target: TargetName,
    /// The target folder does not exist yet (or exists only as `\Noselect`).
    pub create: bool,
    /// Subscribe the target folder (subscribed on the source, not yet on the target).
    pub subscribe: bool,
    /// The special use this folder was recognised for on the source.
    pub special_use: Option<SpecialUse>,
    /// The name got a ` (n)` suffix to avoid another source folder's target.
    pub renamed: bool,
}

/// A target folder that only gives hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HierarchyFolder {
    /// The `\Noselect` source folder it stands for, or `None` for a parent that the source
    /// never listed.
    pub source: Option<String>,
    pub target: TargetName,
    /// The target needs it created before its children.
    pub create: bool,
}

/// Why a source folder is not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExclusionReason {
    /// `--exclude` matched it or a folder above it.
    Excluded(Exclusion),
    /// It is, or lies under, a folder of an excluded special use.
    ExcludedSpecialUse(SpecialUse),
    /// It is not under the row's `UserRoot`.
    OutsideUserRoot,
    /// It is not in the personal namespace (another user's or a shared folder).
    OutsidePersonalNamespace,
    /// It is the personal namespace's own prefix, not a folder.
    NamespaceRoot,
    /// `\Noselect` with no copied folder under it: there is nothing to carry.
    NoSelectWithoutCopiedChildren,
}

/// A source folder that is not copied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExcludedFolder {
    pub source: String,
    pub reason: ExclusionReason,
}

/// The plan for one mailbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FolderPlan {
    /// Sorted by source name.
    pub copies: Vec<FolderCopy>,
    /// Sorted by target path, parents first.
    pub hierarchy_only: Vec<HierarchyFolder>,
    /// Sorted by source name.
    pub excluded: Vec<ExcludedFolder>,
}

impl FolderPlan {
    /// The target folders to CREATE, parents before children.
    pub fn creations(&self) -> Vec<&TargetName> {
        let mut names: Vec<&TargetName> = self
            .hierarchy_only
            .iter()
            .filter(|h| h.create)
            .map(|h| &h.target)
            .chain(self.copies.iter().filter(|c| c.create).map(|c| &c.target))
            .collect();
        names.sort_by(|a, b| {
            a.path
                .len()
                .cmp(&b.path.len())
                .then_with(|| a.path.cmp(&b.path))
        });
        names
    }

    /// Source name → target path of every copy, to store and pass back as
    /// [`PlanOptions::pinned`] on the next pass.
    pub fn pins(&self) -> BTreeMap<String, Vec<String>> {
        self.copies
            .iter()
            .map(|c| (c.source.clone(), c.target.path.clone()))
            .collect()
    }
}

/// A deduplicated source folder and where it sits.
#[derive(Debug, Clone)]
struct SourceFolder {
    name: String,
    attributes: FolderAttributes,
    subscribed: bool,
    /// Components relative to the namespace or user root; INBOX spelled `INBOX`. For an
    /// included folder outside the personal namespace, its full name's components.
    path: Vec<String>,
    /// In the personal namespace (or under the user root): may be a special folder.
    personal: bool,
}

/// Builds the plan; pure and deterministic. Fails only when a listing is unusable.
pub fn plan(
    source: &FolderListing,
    target: &FolderListing,
    options: &PlanOptions,
) -> Result<FolderPlan, Error> {
    let source_folders = dedupe(source)?;
    let target_folders = dedupe(target)?;
    let mut excluded: BTreeMap<String, ExclusionReason> = BTreeMap::new();

    // Place every source folder in the user's hierarchy, or exclude it.
    let mut included: Vec<SourceFolder> = Vec::new();
    for folder in source_folders {
        let placed = match source_path(&folder.name, source, options.user_root.as_deref()) {
            Ok(path) => Ok((path, true)),
            Err(ExclusionReason::OutsidePersonalNamespace) => {
                let path = split_name(&folder.name, source.separator);
                let wanted = options
                    .inclusions
                    .iter()
                    .any(|i| i.matches_path(&path, source.separator));
                if wanted {
                    Ok((path, false))
                } else {
                    Err(ExclusionReason::OutsidePersonalNamespace)
                }
            }
            Err(reason) => Err(reason),
        };
        match placed {
            Ok((path, personal)) => included.push(SourceFolder {
                path,
                personal,
                name: folder.name,
                attributes: folder.attributes,
                subscribed: folder.subscribed,
            }),
            Err(reason) => {
                excluded.insert(folder.name, reason);
            }
        }
    }
    if let Some(root) = &options.user_root
        && !included.iter().any(|f| f.personal)
    {
        return Err(Error::UserRootMatchesNothing {
            server: source.server.clone(),
            user_root: root.clone(),
            listed_with: source.listed_with.clone(),
        });
    }

    // Special uses as detected on the source, before exclusions, so that `\Junk` removes
    // every junk folder and not only the chosen one.
    let detected: Vec<Vec<SpecialUse>> = included
        .iter()
        .map(|f| {
            if f.personal {
                detected_uses(&f.path, &f.attributes)
            } else {
                Vec::new()
            }
        })
        .collect();
    let excluded_use_roots: Vec<(Vec<String>, SpecialUse)> = included
        .iter()
        .zip(&detected)
        .flat_map(|(f, uses)| {
            uses.iter()
                .filter(|u| options.exclusions.contains(&Exclusion::SpecialUse(**u)))
                .map(|u| (f.path.clone(), *u))
        })
        .collect();
    let mut kept: Vec<SourceFolder> = Vec::new();
    for folder in included {
        let by_pattern = options
            .exclusions
            .iter()
            .find(|e| e.matches_path(&folder.path, source.separator));
        let by_use = excluded_use_roots
            .iter()
            .find(|(root, _)| folder.personal && folder.path.starts_with(root));
        match (by_pattern, by_use) {
            (Some(e), _) => {
                excluded.insert(folder.name, ExclusionReason::Excluded(e.clone()));
            }
            (None, Some((_, u))) => {
                excluded.insert(folder.name, ExclusionReason::ExcludedSpecialUse(*u));
            }
            (None, None) => kept.push(folder),
        }
    }
    kept.sort_by(|a, b| a.path.cmp(&b.path).then_with(|| a.name.cmp(&b.name)));

    // Special folders on both sides.
    let source_special = choose_special(
        kept.iter()
            .filter(|f| f.personal)
            .map(|f| (&f.path, &f.attributes)),
    );
    let target_placed: Vec<(Vec<String>, &ListedFolder)> = target_folders
        .iter()
        .filter_map(|f| source_path(&f.name, target, None).ok().map(|p| (p, f)))
        .collect();
    let target_special = choose_special(target_placed.iter().map(|(p, f)| (p, &f.attributes)));
    // Source special root path → (use, target path it maps onto, if the target has one).
    let mut redirects: BTreeMap<Vec<String>, (SpecialUse, Option<Vec<String>>)> = BTreeMap::new();
    for (u, source_path) in &source_special {
        let onto = target_special
            .iter()
            .find(|(tu, _)| tu == u)
            .map(|(_, p)| p.clone());
        redirects.insert(source_path.clone(), (*u, onto));
    }
    // A target special folder that cannot hold children takes the source special folder
    // but not its subfolders, which then keep their source path.
    let no_inferiors: HashSet<Vec<String>> = target_placed
        .iter()
        .filter(|(_, f)| f.attributes.no_inferiors)
        .map(|(p, _)| p.clone())
        .collect();

    let namer = Namer {
        target,
        source_separator: source.separator,
        reserved: &options.target_reserved_chars,
        case_insensitive: options.target_case_insensitive,
    };

    // Natural targets (no collisions considered), and each folder's claim rank.
    let mut natural: Vec<(Vec<String>, u8)> = Vec::with_capacity(kept.len());
    // Pinned folders, INBOX and special folders themselves are anchored: their target does
    // not follow their parent's.
    let mut anchored: Vec<bool> = Vec::with_capacity(kept.len());
    // Special folders are the user's own: another namespace's paths never follow them.
    let no_redirects = BTreeMap::new();
    let redirects_of = |f: &SourceFolder| {
        if f.personal {
            &redirects
        } else {
            &no_redirects
        }
    };
    for folder in &kept {
        let (path, altered, redirected) =
            namer.natural_path(&folder.path, redirects_of(folder), &no_inferiors);
        let pinned = options
            .pinned
            .get(&folder.name)
            .filter(|p| folder.path != ["INBOX"] && namer.valid_pin(p));
        let rank = if pinned.is_some() {
            0
        } else if !folder.personal {
            // The user's own folders first: an included shared folder yields to them.
            5
        } else if redirected {
            1
        } else if folder.path == ["INBOX"] {
            2
        } else if !altered {
            3
        } else {
            4
        };
        anchored.push(
            pinned.is_some()
                || folder.path == ["INBOX"]
                || (redirected && redirects.contains_key(&folder.path)),
        );
        natural.push((pinned.cloned().unwrap_or(path), rank));
    }
    let natural_keys: HashMap<String, usize> = {
        let mut keys = HashMap::new();
        for (i, (path, _)) in natural.iter().enumerate() {
            keys.entry(namer.key(path)).or_insert(i);
        }
        keys
    };

    // Claim names in rank order; parents always precede their children in this order.
    let mut order: Vec<usize> = (0..kept.len()).collect();
    order.sort_by(|&a, &b| {
        natural[a]
            .1
            .cmp(&natural[b].1)
            .then_with(|| kept[a].path.cmp(&kept[b].path))
            .then_with(|| kept[a].name.cmp(&kept[b].name))
    });
    let mut claimed: HashMap<String, usize> = HashMap::new();
    // Source path → target path, apart for the personal and the included foreign folders
    // (`INBOX.a` and a shared `a` can share a path; neither is the other's parent).
    let mut assigned: [HashMap<Vec<String>, Vec<String>>; 2] = Default::default();
    let mut finals: Vec<Option<(Vec<String>, bool)>> = vec![None; kept.len()];
    for &i in &order {
        let folder = &kept[i];
        let natural_path = &natural[i].0;
        let wanted = if anchored[i] {
            natural_path.clone()
        } else {
            namer.final_path(
                &folder.path,
                &assigned[usize::from(folder.personal)],
                redirects_of(folder),
                &no_inferiors,
            )
        };
        let mut path = wanted.clone();
        let mut renamed = false;
        if claimed.contains_key(&namer.key(&path)) {
            renamed = true;
            let taken = |p: &Vec<String>| {
                let key = namer.key(p);
                claimed.contains_key(&key)
                    || natural_keys.get(&key).is_some_and(|&owner| owner != i)
            };
            let mut n: u64 = 2;
            loop {
                path = namer.with_suffix(&wanted, n);
                if !taken(&path) {
                    break;
                }
                n += 1;
            }
        }
        claimed.insert(namer.key(&path), i);
        assigned[usize::from(folder.personal)].insert(folder.path.clone(), path.clone());
        finals[i] = Some((path, renamed));
    }

    // Which target names exist already, and which are subscribed.
    let existing_listed: HashSet<String> = target_folders
        .iter()
        .map(|f| namer.key_of_name(&f.name))
        .collect();
    let existing_selectable: HashSet<String> = target_folders
        .iter()
        .filter(|f| !f.attributes.no_select)
        .map(|f| namer.key_of_name(&f.name))
        .collect();
    let target_subscribed: HashSet<String> = target_folders
        .iter()
        .filter(|f| f.subscribed)
        .map(|f| namer.key_of_name(&f.name))
        .collect();

    let mut copies = Vec::new();
    let mut copy_keys: HashSet<String> = HashSet::new();
    let mut noselect: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for (i, folder) in kept.iter().enumerate() {
        let Some((path, renamed)) = finals[i].clone() else {
            continue;
        };
        let key = namer.key(&path);
        if folder.attributes.no_select {
            noselect.insert(key, (folder.name.clone(), path));
            continue;
        }
        let is_inbox = key.eq_ignore_ascii_case("INBOX");
        copy_keys.insert(key.clone());
        copies.push(FolderCopy {
            source: folder.name.clone(),
            target: namer.target_name(path),
            create: !is_inbox && !existing_selectable.contains(&key),
            subscribe: folder.subscribed && !target_subscribed.contains(&key),
            special_use: source_special
                .iter()
                .find(|(_, p)| *p == folder.path)
                .map(|(u, _)| *u),
            renamed,
        });
    }

    // Parents the copies need: from `\Noselect` source folders, or never listed at all.
    let mut needed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if target.separator.is_some() {
        for copy in &copies {
            for len in 1..copy.target.path.len() {
                let parent = copy.target.path[..len].to_vec();
                needed.entry(namer.key(&parent)).or_insert(parent);
            }
        }
    }
    let mut hierarchy_only = Vec::new();
    for (key, path) in needed {
        if copy_keys.contains(&key) || key.eq_ignore_ascii_case("INBOX") {
            continue;
        }
        let create = options.target_needs_explicit_parents && !existing_listed.contains(&key);
        match noselect.remove(&key) {
            Some((source, _)) => hierarchy_only.push(HierarchyFolder {
                source: Some(source),
                target: namer.target_name(path),
                create,
            }),
            None if create => hierarchy_only.push(HierarchyFolder {
                source: None,
                target: namer.target_name(path),
                create,
            }),
            None => {}
        }
    }
    for (_, (source, _)) in noselect {
        excluded.insert(source, ExclusionReason::NoSelectWithoutCopiedChildren);
    }
    hierarchy_only.sort_by(|a, b| {
        a.target
            .path
            .len()
            .cmp(&b.target.path.len())
            .then_with(|| a.target.path.cmp(&b.target.path))
    });
    copies.sort_by(|a, b| a.source.cmp(&b.source));
    Ok(FolderPlan {
        copies,
        hierarchy_only,
        excluded: excluded
            .into_iter()
            .map(|(source, reason)| ExcludedFolder { source, reason })
            .collect(),
    })
}

/// The listing's folders, one per name (a server may repeat one: attributes and
/// subscription are merged), sorted by name; an empty name is the server's fault.
fn dedupe(listing: &FolderListing) -> Result<Vec<ListedFolder>, Error> {
    let mut by_name: BTreeMap<&str, ListedFolder> = BTreeMap::new();
    for folder in &listing.folders {
        if folder.name.is_empty() {
            return Err(Error::InvalidFolderListing {
                server: listing.server.clone(),
                folder: String::new(),
                problem: "has an empty name",
            });
        }
        if folder.name.contains(['\0', '\r', '\n']) {
            return Err(Error::InvalidFolderListing {
                server: listing.server.clone(),
                folder: folder.name.clone(),
                problem: "contains a NUL or line-break character",
            });
        }
        by_name
            .entry(&folder.name)
            .and_modify(|seen| {
                // Selectable if any listing says so: hiding a folder could lose its mail.
                seen.attributes.no_select &= folder.attributes.no_select;
                seen.attributes.no_inferiors |= folder.attributes.no_inferiors;
                seen.attributes.has_children |= folder.attributes.has_children;
                for u in &folder.attributes.special_use {
                    if !seen.attributes.special_use.contains(u) {
                        seen.attributes.special_use.push(*u);
                    }
                }
                seen.subscribed |= folder.subscribed;
            })
            .or_insert_with(|| folder.clone());
    }
    Ok(by_name.into_values().collect())
}

/// Where a listed folder sits in the user's hierarchy: its components relative to the user
/// root, or else to the personal namespace, with INBOX spelled `INBOX`.
fn source_path(
    name: &str,
    listing: &FolderListing,
    user_root: Option<&str>,
) -> Result<Vec<String>, ExclusionReason> {
    let split = |rest: &str| -> Vec<String> {
        let mut parts: Vec<String> = match listing.separator {
            Some(sep) => rest.split(sep).map(str::to_owned).collect(),
            None => vec![rest.to_owned()],
        };
        if parts[0].eq_ignore_ascii_case("INBOX") {
            "INBOX".clone_into(&mut parts[0]);
        }
        parts
    };
    if let Some(root) = user_root {
        let root = match listing.separator {
            Some(sep) => root.strip_suffix(sep).unwrap_or(root),
            None => root,
        };
        if name == root {
            return Ok(vec!["INBOX".to_owned()]);
        }
        let rest = listing
            .separator
            .and_then(|sep| name.strip_prefix(root)?.strip_prefix(sep));
        return match rest {
            Some(rest) if !rest.is_empty() => Ok(split(rest)),
            _ => Err(ExclusionReason::OutsideUserRoot),
        };
    }
    if name.eq_ignore_ascii_case("INBOX") {
        return Ok(vec!["INBOX".to_owned()]);
    }
    let prefix = listing.prefix.as_str();
    // The prefix's INBOX part is case-insensitive like INBOX itself (`INBOX.` / `inbox.`).
    let inbox_prefix = prefix.len() >= 5 && prefix[..5].eq_ignore_ascii_case("INBOX");
    let under = match name.get(..prefix.len()) {
        Some(head) if inbox_prefix => head.eq_ignore_ascii_case(prefix),
        Some(head) => head == prefix,
        None => false,
    };
    let is_prefix_itself = listing
        .separator
        .is_some_and(|sep| prefix.strip_suffix(sep) == Some(name));
    // Someone else's if a foreign prefix holds it more closely than the personal one.
    let foreign = listing
        .foreign_prefixes
        .iter()
        .filter(|p| under_prefix(name, p, listing.separator))
        .map(String::len)
        .max();
    if let Some(len) = foreign
        && (!(under || is_prefix_itself) || len > prefix.len())
    {
        return Err(ExclusionReason::OutsidePersonalNamespace);
    }
    if under {
        let rest = &name[prefix.len()..];
        return if rest.is_empty() {
            Err(ExclusionReason::NamespaceRoot)
        } else {
            Ok(split(rest))
        };
    }
    if is_prefix_itself {
        Err(ExclusionReason::NamespaceRoot)
    } else {
        Err(ExclusionReason::OutsidePersonalNamespace)
    }
}

/// Whether `name` is a namespace `prefix`'s root (the prefix without its trailing
/// separator: `#shared` of `#shared.`) or lies under it. An empty prefix holds everything.
fn under_prefix(name: &str, prefix: &str, separator: Option<char>) -> bool {
    name.starts_with(prefix)
        || separator
            .and_then(|sep| prefix.strip_suffix(sep))
            .is_some_and(|root| !root.is_empty() && name == root)
}

/// A full name's components, as the listing spells them.
fn split_name(name: &str, separator: Option<char>) -> Vec<String> {
    match separator {
        Some(sep) => name.split(sep).map(str::to_owned).collect(),
        None => vec![name.to_owned()],
    }
}

/// The special uses a folder is recognised for: its attributes, else its name.
fn detected_uses(path: &[String], attributes: &FolderAttributes) -> Vec<SpecialUse> {
    if path == ["INBOX"] {
        return Vec::new();
    }
    if !attributes.special_use.is_empty() {
        return attributes.special_use.clone();
    }
    SpecialUse::ALL_USES
        .into_iter()
        .filter(|u| u.name_rank(path).is_some())
        .collect()
}

/// One selectable folder per special use: by attribute (lowest path), else by well-known
/// name (earliest name, then lowest path); a folder serves one use only.
fn choose_special<'a>(
    folders: impl Iterator<Item = (&'a Vec<String>, &'a FolderAttributes)>,
) -> Vec<(SpecialUse, Vec<String>)> {
    let mut candidates: Vec<(&Vec<String>, &FolderAttributes)> = folders
        // A name with an empty component (`Sent.` on a `.` server) is too odd to trust.
        .filter(|(p, a)| {
            !a.no_select && p.as_slice() != ["INBOX"] && p.iter().all(|c| !c.is_empty())
        })
        .collect();
    candidates.sort_by(|a, b| a.0.cmp(b.0));
    let mut chosen: Vec<(SpecialUse, Vec<String>)> = Vec::new();
    let taken = |chosen: &Vec<(SpecialUse, Vec<String>)>, p: &Vec<String>| {
        chosen.iter().any(|(_, q)| q == p)
    };
    for u in SpecialUse::ALL_USES {
        let by_attribute = candidates
            .iter()
            .find(|(p, a)| a.special_use.contains(&u) && !taken(&chosen, p))
            .map(|(p, _)| (*p).clone());
        let by_name = || {
            candidates
                .iter()
                .filter(|(p, a)| a.special_use.is_empty() && !taken(&chosen, p))
                .filter_map(|(p, _)| u.name_rank(p).map(|rank| (rank, *p)))
                .min()
                .map(|(_, p)| p.clone())
        };
        if let Some(p) = by_attribute.or_else(by_name) {
            chosen.push((u, p));
        }
    }
    chosen
}

/// Turns source paths into target paths and names.
struct Namer<'a> {
    target: &'a FolderListing,
    source_separator: Option<char>,
    reserved: &'a [char],
    case_insensitive: bool,
}

impl Namer<'_> {
    /// One source component as a target component (see the module doc), and whether it
    /// had to change.
    fn component(&self, source: &str) -> (String, bool) {
        if source.is_empty() {
            // `a//b`: no server accepts an empty component.
            return ("_".to_owned(), true);
        }
        let mut altered = false;
        let out = source
            .chars()
            .map(|c| {
                if Some(c) == self.target.separator || self.reserved.contains(&c) {
                    altered = true;
                    lookalike(c)
                } else {
                    c
                }
            })
            .collect();
        (out, altered)
    }

    /// `parent` + one source component, on a hierarchical or a flat target.
    fn child(&self, parent: &[String], last: &str) -> (Vec<String>, bool) {
        match (self.target.separator, parent) {
            (Some(_), _) | (None, []) => {
                let (c, altered) = self.component(last);
                let mut path = parent.to_vec();
                path.push(c);
                (path, altered)
            }
            (None, [flat, ..]) => {
                // A flat target keeps the whole source path in one name.
                let sep = self.source_separator.map(String::from).unwrap_or_default();
                let (c, altered) = self.component(&format!("{flat}{sep}{last}"));
                (vec![c], altered)
            }
        }
    }

    /// The target path ignoring collisions; whether escaping changed it; whether it lies
    /// at or under a special folder that maps onto the target's.
    fn natural_path(
        &self,
        path: &[String],
        redirects: &BTreeMap<Vec<String>, (SpecialUse, Option<Vec<String>>)>,
        no_inferiors: &HashSet<Vec<String>>,
    ) -> (Vec<String>, bool, bool) {
        if path == ["INBOX"] {
            return (path.to_vec(), false, false);
        }
        for len in (1..=path.len()).rev() {
            if let Some((_, Some(onto))) = redirects.get(&path[..len])
                && (len == path.len() || !no_inferiors.contains(onto))
            {
                let mut out = onto.clone();
                let mut altered = false;
                for c in &path[len..] {
                    let (next, a) = self.child(&out, c);
                    out = next;
                    altered |= a;
                }
                return (out, altered, true);
            }
        }
        let mut out: Vec<String> = Vec::new();
        let mut altered = false;
        for (i, c) in path.iter().enumerate() {
            if i == 0 && c == "INBOX" {
                out.push(c.clone());
                continue;
            }
            let (next, a) = self.child(&out, c);
            out = next;
            altered |= a;
        }
        (out, altered, false)
    }

    /// The target path given the targets already assigned to ancestors.
    fn final_path(
        &self,
        path: &[String],
        assigned: &HashMap<Vec<String>, Vec<String>>,
        redirects: &BTreeMap<Vec<String>, (SpecialUse, Option<Vec<String>>)>,
        no_inferiors: &HashSet<Vec<String>>,
    ) -> Vec<String> {
        // The nearest listed ancestor that has a target; below it, component by component.
        for len in (1..path.len()).rev() {
            if let Some(base) = assigned.get(&path[..len]) {
                let mut out = base.clone();
                for c in &path[len..] {
                    out = self.child(&out, c).0;
                }
                return out;
            }
        }
        self.natural_path(path, redirects, no_inferiors).0
    }

    /// `path` with ` (n)` on its last component.
    fn with_suffix(&self, path: &[String], n: u64) -> Vec<String> {
        let mut out = path.to_vec();
        if let Some(last) = out.last_mut() {
            *last = self.component(&format!("{last} ({n})")).0;
        }
        out
    }

    /// A pin from an earlier pass is used only if it is still a valid name here.
    fn valid_pin(&self, path: &[String]) -> bool {
        let flat_ok = self.target.separator.is_some() || path.len() == 1;
        flat_ok
            && !path.is_empty()
            && path.iter().all(|c| {
                !c.is_empty() && !c.contains(['\0', '\r', '\n']) && self.component(c).0 == *c
            })
    }

    /// The full target name.
    fn join(&self, path: &[String]) -> String {
        let target = self.target;
        let sep = target.separator.map(String::from).unwrap_or_default();
        match path {
            [only] if only == "INBOX" => only.clone(),
            [first, ..]
                if first == "INBOX"
                    && target.separator.is_some()
                    && target.prefix.eq_ignore_ascii_case(&format!("INBOX{sep}")) =>
            {
                path.join(&sep)
            }
            _ => format!("{}{}", target.prefix, path.join(&sep)),
        }
    }

    /// The comparison key of a target name: INBOX in any case is INBOX; the rest folded
    /// when the target is case-insensitive.
    fn key_of_name(&self, name: &str) -> String {
        let name = match name.get(..5) {
            Some(head) if head.eq_ignore_ascii_case("INBOX") => {
                let rest = &name[5..];
                let boundary =
                    rest.is_empty() || self.target.separator.is_some_and(|s| rest.starts_with(s));
                if boundary {
                    format!("INBOX{rest}")
                } else {
                    name.to_owned()
                }
            }
            _ => name.to_owned(),
        };
        if self.case_insensitive {
            name.to_lowercase()
        } else {
            name
        }
    }

    fn key(&self, path: &[String]) -> String {
        self.key_of_name(&self.join(path))
    }

    fn target_name(&self, path: Vec<String>) -> TargetName {
        TargetName {
            name: self.join(&path),
            path,
        }
    }
}

/// The character that stands in for a separator or reserved character (module doc).
fn lookalike(c: char) -> char {
    match c {
        '.' => '\u{2024}',
        '/' => '\u{2215}',
        '\\' => '\u{29F5}',
        '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).unwrap_or('_'),
        _ => '_',
    }
}

#[cfg(test)]
mod tests;
