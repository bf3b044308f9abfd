//! A deterministic mail corpus with the awkward cases real mailboxes have.
//!
//! The same `CorpusSpec` always yields the same folders, bytes, flags and dates. Only a
//! small plan is held in memory; message bytes are generated on demand, so a 900 MB corpus
//! streams into the seeder without ever being in memory at once.
//!
//! The first messages are a fixed catalogue, one per awkward case, so even a small corpus
//! has each: no Message-ID, repeated Message-IDs, byte-identical duplicates (same folder
//! and across folders), 8-bit Latin-1 and raw UTF-8 headers and bodies, encoded-words,
//! bare-LF and mixed line endings, lines over 998 and over 10,000 characters, a header
//! with no body, an empty body, all system flags, custom keywords, attachments and
//! INTERNALDATEs across years and zones.

use super::base64_codec;
use super::folder_path::FolderPath;
use super::internal_date::InternalDate;
use super::maildir_seed::{SeedFolder, SeedMessage};
use super::message_flag::Flag;

/// The kit's own PRNG (SplitMix64): tiny, fast, and stable across Rust releases.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the tiny modulo bias is irrelevant for test data.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn range(&mut self, low: u64, high_inclusive: u64) -> u64 {
        low + self.below(high_inclusive - low + 1)
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u32) -> bool {
        self.below(1000) < u64::from(per_mille)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Log-uniform in `low..=high`: mostly small values, a long tail, like mail sizes.
    pub fn log_uniform(&mut self, low: usize, high: usize) -> usize {
        let (lo, hi) = ((low.max(1)) as f64, (high.max(low).max(1)) as f64);
        let u = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (lo * (hi / lo).powf(u)).round() as usize
    }
}

/// Message sizes (total bytes, approximately).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeProfile {
    pub text_min: usize,
    pub text_max: usize,
    /// Share of messages carrying a base64 attachment, per mille.
    pub attachment_per_mille: u32,
    pub attachment_min: usize,
    pub attachment_max: usize,
}

impl SizeProfile {
    /// For tests: small messages and a few attachments up to 120 KB.
    pub const SMALL: SizeProfile = SizeProfile {
        text_min: 300,
        text_max: 4_000,
        attachment_per_mille: 20,
        attachment_min: 20_000,
        attachment_max: 120_000,
    };

    /// For benches: mostly 2–30 KB, 4% with 0.5–5 MB attachments; ~86 KB on average,
    /// so 10,000 messages are about 860 MB (measured with seed 2024).
    pub const REALISTIC: SizeProfile = SizeProfile {
        text_min: 2_000,
        text_max: 30_000,
        attachment_per_mille: 40,
        attachment_min: 500_000,
        attachment_max: 5_000_000,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorpusSpec {
    pub seed: u64,
    pub messages: usize,
    pub sizes: SizeProfile,
    /// Adds folders whose names contain '.', which only a '/'-separator server can hold.
    pub dotted_names: bool,
}

impl CorpusSpec {
    /// A few hundred small messages: what an end-to-end test should use.
    pub fn small(seed: u64) -> Self {
        CorpusSpec {
            seed,
            messages: 300,
            sizes: SizeProfile::SMALL,
            dotted_names: false,
        }
    }

    /// 10,000 messages, about 900 MB: for benches.
    pub fn realistic(seed: u64) -> Self {
        CorpusSpec {
            seed,
            messages: 10_000,
            sizes: SizeProfile::REALISTIC,
            dotted_names: false,
        }
    }

    pub fn with_messages(mut self, messages: usize) -> Self {
        self.messages = messages;
        self
    }

    pub fn with_dotted_names(mut self, dotted: bool) -> Self {
        self.dotted_names = dotted;
        self
    }
}

/// The keywords the corpus uses, the last one deliberately long.
pub const KEYWORDS: [&str; 5] = [
    "$Forwarded",
    "$Junk",
    "$label1",
    "NonJunk",
    "$X-Archiver-Retention-Policy-Seven-Years-Legal-Hold-2019-Q4-Confirmed",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    Plain,
    Latin1,
    Utf8Headers,
    EncodedWords,
    BareLf,
    MixedEndings,
    LongLine(usize),
    HeaderOnly,
    Empty,
    Attachment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MessageIdPlan {
    Own,
    Absent,
    /// Reuses the Message-ID of an earlier message, with different content.
    SameAs(usize),
}

#[derive(Debug, Clone)]
struct Planned {
    folder: usize,
    /// The message whose bytes this one has: itself, or an earlier one (duplicate).
    bytes_of: usize,
    body: Body,
    message_id: MessageIdPlan,
    size: usize,
    flags: Vec<Flag>,
    date: InternalDate,
}

pub struct Corpus {
    spec: CorpusSpec,
    folders: Vec<SeedFolder>,
    plan: Vec<Planned>,
}

struct FolderDef {
    path: &'static [&'static str],
    subscribed: bool,
    /// Relative share of random messages.
    weight: u64,
    /// Only with `dotted_names`.
    dotted: bool,
}

const FOLDERS: &[FolderDef] = &[
    FolderDef {
        path: &["INBOX"],
        subscribed: true,
        weight: 30,
        dotted: false,
    },
    FolderDef {
        path: &["Sent"],
        subscribed: true,
        weight: 12,
        dotted: false,
    },
    FolderDef {
        path: &["Drafts"],
        subscribed: true,
        weight: 2,
        dotted: false,
    },
    FolderDef {
        path: &["Trash"],
        subscribed: true,
        weight: 4,
        dotted: false,
    },
    FolderDef {
        path: &["Junk"],
        subscribed: true,
        weight: 4,
        dotted: false,
    },
    FolderDef {
        path: &["Archive"],
        subscribed: true,
        weight: 3,
        dotted: false,
    },
    FolderDef {
        path: &["Archive", "2019"],
        subscribed: true,
        weight: 8,
        dotted: false,
    },
    FolderDef {
        path: &["Archive", "2024"],
        subscribed: true,
        weight: 8,
        dotted: false,
    },
    FolderDef {
        path: &["Projects"],
        subscribed: true,
        weight: 3,
        dotted: false,
    },
    FolderDef {
        path: &["Projects", "Q1 Plan"],
        subscribed: true,
        weight: 3,
        dotted: false,
    },
    FolderDef {
        path: &["R&D"],
        subscribed: true,
        weight: 3,
        dotted: false,
    },
    FolderDef {
        path: &["Reports & Stats ~ 2023"],
        subscribed: false,
        weight: 2,
        dotted: false,
    },
    FolderDef {
        path: &["Ünïcödé Ordner"],
        subscribed: true,
        weight: 3,
        dotted: false,
    },
    FolderDef {
        path: &["日本語のメール"],
        subscribed: true,
        weight: 2,
        dotted: false,
    },
    FolderDef {
        path: &["Clients"],
        subscribed: true,
        weight: 2,
        dotted: false,
    },
    FolderDef {
        path: &["Clients", "Müller & Söhne GmbH"],
        subscribed: true,
        weight: 3,
        dotted: false,
    },
    FolderDef {
        path: &["Deep"],
        subscribed: false,
        weight: 1,
        dotted: false,
    },
    FolderDef {
        path: &["Deep", "Er"],
        subscribed: false,
        weight: 1,
        dotted: false,
    },
    FolderDef {
        path: &["Deep", "Er", "Est 😀"],
        subscribed: true,
        weight: 2,
        dotted: false,
    },
    FolderDef {
        path: &["INBOX", "Receipts"],
        subscribed: true,
        weight: 2,
        dotted: false,
    },
    FolderDef {
        path: &["Empty Folder"],
        subscribed: true,
        weight: 0,
        dotted: false,
    },
    FolderDef {
        path: &["v1.2 Release"],
        subscribed: true,
        weight: 2,
        dotted: true,
    },
    FolderDef {
        path: &["Projects", "a.b.c"],
        subscribed: false,
        weight: 1,
        dotted: true,
    },
];

/// Zone offsets in minutes, including the odd ones (+0545 Nepal, -0330 Newfoundland,
/// +1400 Kiribati).
const ZONES: [i32; 14] = [
    -720, -600, -480, -300, -210, 0, 0, 60, 120, 330, 345, 540, 780, 840,
];

const WORDS: &[&str] = &[
    "the",
    "meeting",
    "budget",
    "quarter",
    "report",
    "invoice",
    "please",
    "review",
    "attached",
    "schedule",
    "project",
    "deadline",
    "customer",
    "server",
    "migration",
    "mailbox",
    "thanks",
    "regards",
    "update",
    "release",
    "contract",
    "draft",
    "agenda",
    "minutes",
    "numbers",
    "forecast",
    "team",
    "weekly",
    "status",
    "question",
    "answer",
    "follow-up",
    "approval",
    "travel",
    "expenses",
    "holiday",
    "office",
    "network",
    "backup",
    "password",
    "security",
];

const UTF8_WORDS: &[&str] = &[
    "Grüße",
    "Straße",
    "naïve",
    "façade",
    "smörgåsbord",
    "Ελληνικά",
    "русский",
    "日本語",
    "中文",
    "한국어",
    "עברית",
    "العربية",
    "emoji 📧",
    "✓ done",
    "€ 42,50",
    "Œuvre",
];

const LATIN1_WORDS: &[&[u8]] = &[
    b"Gr\xfc\xdfe",
    b"Stra\xdfe",
    b"na\xefve",
    b"fa\xe7ade",
    b"\xa342",
    b"se\xf1or",
    b"\xe9t\xe9",
];

impl Corpus {
    pub fn generate(spec: CorpusSpec) -> Corpus {
        let defs: Vec<&FolderDef> = FOLDERS
            .iter()
            .filter(|d| spec.dotted_names || !d.dotted)
            .collect();
        let folders: Vec<SeedFolder> = defs
            .iter()
            .map(|d| SeedFolder {
                path: FolderPath::new(d.path),
                subscribed: d.subscribed,
            })
            .collect();
        let folder_index =
            |path: &[&str]| defs.iter().position(|d| d.path == path).unwrap_or_default();
        let total_weight: u64 = defs.iter().map(|d| d.weight).sum();
        let mut rng = SplitMix64::new(spec.seed ^ 0x636f_7270_7573);
        let mut plan: Vec<Planned> = Vec::with_capacity(spec.messages);

        for i in 0..spec.messages {
            let mut p = Planned {
                folder: 0,
                bytes_of: i,
                body: Body::Plain,
                message_id: MessageIdPlan::Own,
                size: rng.log_uniform(spec.sizes.text_min, spec.sizes.text_max),
                flags: Vec::new(),
                date: random_date(&mut rng),
            };
            match i {
                0 => p.flags = Flag::SYSTEM.to_vec(),
                1 => p.message_id = MessageIdPlan::Absent,
                2 => {
                    p.message_id = MessageIdPlan::SameAs(0);
                    p.flags = vec![Flag::Seen];
                }
                3 => {
                    p.bytes_of = 0;
                    p.flags = vec![Flag::Seen];
                }
                4 => {
                    p.bytes_of = 0;
                    p.folder = folder_index(&["Archive", "2019"]);
                    p.flags = vec![Flag::Seen, Flag::Keyword(KEYWORDS[0].into())];
                }
                5 => p.body = Body::Latin1,
                6 => {
                    p.body = Body::Utf8Headers;
                    p.folder = folder_index(&["Ünïcödé Ordner"]);
                }
                7 => p.body = Body::EncodedWords,
                8 => p.body = Body::BareLf,
                9 => p.body = Body::MixedEndings,
                10 => p.body = Body::LongLine(2_000),
                11 => p.body = Body::LongLine(12_345),
                12 => {
                    p.flags = KEYWORDS
                        .iter()
                        .map(|k| Flag::Keyword((*k).to_owned()))
                        .collect();
                    p.flags.push(Flag::Seen);
                }
                13 => p.body = Body::HeaderOnly,
                14 => p.body = Body::Empty,
                15 => {
                    p.body = Body::Attachment;
                    p.size = spec.sizes.attachment_min;
                    p.folder = folder_index(&["Deep", "Er", "Est 😀"]);
                }
                16 => {
                    // The turn of the millennium, written west of UTC.
                    p.date = InternalDate::from_civil(1999, 12, 31, (23, 59, 59), -480)
                        .unwrap_or(p.date);
                    p.folder = folder_index(&["R&D"]);
                }
                17 => {
                    p.date =
                        InternalDate::from_civil(2016, 2, 29, (12, 0, 0), 345).unwrap_or(p.date);
                    p.folder = folder_index(&["日本語のメール"]);
                    p.message_id = MessageIdPlan::SameAs(5);
                }
                _ => {
                    p.folder = weighted_folder(&mut rng, &defs, total_weight);
                    p.body = random_body(&mut rng, spec.sizes);
                    if p.body == Body::Attachment {
                        p.size =
                            rng.log_uniform(spec.sizes.attachment_min, spec.sizes.attachment_max);
                    }
                    p.flags = random_flags(&mut rng, defs[p.folder].path);
                    if rng.chance(20) {
                        p.message_id = MessageIdPlan::Absent;
                    } else if rng.chance(10) {
                        p.message_id = MessageIdPlan::SameAs(rng.below(i as u64) as usize);
                    }
                    if rng.chance(10) {
                        // A byte-identical duplicate, in its own folder or another.
                        p.bytes_of = plan[rng.below(i as u64) as usize].bytes_of;
                    }
                }
            }
            plan.push(p);
        }
        Corpus {
            spec,
            folders,
            plan,
        }
    }

    pub fn spec(&self) -> &CorpusSpec {
        &self.spec
    }

    pub fn folders(&self) -> &[SeedFolder] {
        &self.folders
    }

    pub fn len(&self) -> usize {
        self.plan.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plan.is_empty()
    }

    /// Message `index`, generated now (deterministically).
    pub fn message(&self, index: usize) -> SeedMessage {
        let p = &self.plan[index];
        SeedMessage {
            folder: self.folders[p.folder].path.clone(),
            bytes: self.bytes(p.bytes_of),
            flags: p.flags.clone(),
            internal_date: p.date,
        }
    }

    pub fn messages(&self) -> impl Iterator<Item = SeedMessage> + '_ {
        (0..self.plan.len()).map(|i| self.message(i))
    }

    /// How many messages each folder gets.
    pub fn folder_counts(&self) -> Vec<(FolderPath, usize)> {
        let mut counts = vec![0usize; self.folders.len()];
        for p in &self.plan {
            counts[p.folder] += 1;
        }
        self.folders
            .iter()
            .map(|f| f.path.clone())
            .zip(counts)
            .collect()
    }

    fn message_id(&self, index: usize) -> Option<String> {
        match self.plan[index].message_id {
            MessageIdPlan::Absent => None,
            MessageIdPlan::Own => Some(format!(
                "<{:016x}.{index}@corpus.example.test>",
                self.content_seed(index)
            )),
            // Chains of SameAs end at an Own or Absent message, since they point backwards.
            MessageIdPlan::SameAs(other) => self
                .message_id(other)
                .or_else(|| Some(format!("<shared-{other}@corpus.example.test>"))),
        }
    }

    fn content_seed(&self, index: usize) -> u64 {
        SplitMix64::new(self.spec.seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ index as u64)
            .next_u64()
    }

    /// The bytes of message `index` (duplicates call this with the original's index).
    fn bytes(&self, index: usize) -> Vec<u8> {
        let p = &self.plan[index];
        let mut rng = SplitMix64::new(self.content_seed(index));
        let eol: &[u8] = if p.body == Body::BareLf {
            b"\n"
        } else {
            b"\r\n"
        };
        let mut m: Vec<u8> = Vec::with_capacity(p.size + 1024);
        let push_header = |m: &mut Vec<u8>, name: &str, value: &[u8]| {
            m.extend_from_slice(name.as_bytes());
            m.extend_from_slice(b": ");
            m.extend_from_slice(value);
            m.extend_from_slice(eol);
        };

        let relay = rng.range(1, 254);
        let received = format!(
            "from mail{relay}.example.net (mail{relay}.example.net [192.0.2.{relay}]){eol}\tby mx.example.test with ESMTPS id {:012X}{eol}\tfor <user@example.test>; {}",
            rng.next_u64() & 0xffff_ffff_ffff,
            p.date.to_rfc5322(),
            eol = String::from_utf8_lossy(eol),
        );
        push_header(&mut m, "Return-Path", b"<sender@example.net>");
        push_header(&mut m, "Received", received.as_bytes());
        let sent = InternalDate::new(
            p.date.unix - rng.range(1, 900) as i64,
            p.date.offset_minutes,
        );
        push_header(&mut m, "Date", sent.to_rfc5322().as_bytes());

        let topic: Vec<&str> = (0..rng.range(2, 6)).map(|_| *rng.pick(WORDS)).collect();
        let topic = topic.join(" ");
        match p.body {
            Body::Utf8Headers => {
                push_header(
                    &mut m,
                    "From",
                    "\"Jürgen Müller — 日本\" <juergen@example.net>".as_bytes(),
                );
                let subject = format!("{} {} #{index}", rng.pick(UTF8_WORDS), topic);
                push_header(&mut m, "Subject", subject.as_bytes());
            }
            Body::EncodedWords => {
                push_header(
                    &mut m,
                    "From",
                    b"=?ISO-8859-1?Q?Andr=E9_Fran=E7ois?= <andre@example.net>",
                );
                let text = format!("{} {} #{index}", rng.pick(UTF8_WORDS), topic);
                let subject = format!("=?UTF-8?B?{}?=", base64_codec::encode(text.as_bytes()));
                push_header(&mut m, "Subject", subject.as_bytes());
            }
            Body::Latin1 => {
                push_header(&mut m, "From", b"Ren\xe9 Bj\xf6rk <rene@example.net>");
                let mut subject = b"Gr\xfc\xdfe: ".to_vec();
                subject.extend_from_slice(format!("{topic} #{index}").as_bytes());
                push_header(&mut m, "Subject", &subject);
            }
            _ => {
                push_header(&mut m, "From", b"\"Sender, Example\" <sender@example.net>");
                push_header(&mut m, "Subject", format!("{topic} #{index}").as_bytes());
            }
        }
        push_header(&mut m, "To", b"user@example.test");
        if let Some(id) = self.message_id(index) {
            push_header(&mut m, "Message-ID", id.as_bytes());
        }
        push_header(&mut m, "MIME-Version", b"1.0");
        push_header(
            &mut m,
            "X-Corpus",
            format!("seed {} message {index}", self.spec.seed).as_bytes(),
        );

        match p.body {
            Body::HeaderOnly => {
                push_header(&mut m, "Content-Type", b"text/plain; charset=us-ascii");
                return m;
            }
            Body::Empty => {
                push_header(&mut m, "Content-Type", b"text/plain; charset=us-ascii");
                m.extend_from_slice(eol);
                return m;
            }
            Body::Attachment => {
                let boundary = format!("=_kit_{:016x}", rng.next_u64());
                push_header(
                    &mut m,
                    "Content-Type",
                    format!("multipart/mixed; boundary=\"{boundary}\"").as_bytes(),
                );
                m.extend_from_slice(eol);
                m.extend_from_slice(
                    format!("--{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
                        .as_bytes(),
                );
                text_body(&mut rng, &mut m, 600, WORDS, b"\r\n");
                m.extend_from_slice(
                    format!(
                        "\r\n--{boundary}\r\nContent-Type: application/octet-stream; name=\"scan-{index}.bin\"\r\nContent-Disposition: attachment; filename=\"scan-{index}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
                    )
                    .as_bytes(),
                );
                let raw = (p.size.saturating_sub(m.len() + 64)) * 3 / 4;
                let mut data = vec![0u8; raw];
                for chunk in data.chunks_mut(8) {
                    let word = rng.next_u64().to_le_bytes();
                    chunk.copy_from_slice(&word[..chunk.len()]);
                }
                m.extend_from_slice(base64_codec::encode_mime_lines(&data, "\r\n").as_bytes());
                m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                return m;
            }
            Body::Latin1 => {
                push_header(&mut m, "Content-Type", b"text/plain; charset=iso-8859-1");
                push_header(&mut m, "Content-Transfer-Encoding", b"8bit");
            }
            Body::Utf8Headers => {
                push_header(&mut m, "Content-Type", b"text/plain; charset=utf-8");
                push_header(&mut m, "Content-Transfer-Encoding", b"8bit");
            }
            _ => {
                push_header(&mut m, "Content-Type", b"text/plain; charset=us-ascii");
                push_header(&mut m, "Content-Transfer-Encoding", b"7bit");
            }
        }
        m.extend_from_slice(eol);
        let target = p.size.saturating_sub(m.len()).max(40);
        match p.body {
            Body::Latin1 => latin1_body(&mut rng, &mut m, target),
            Body::Utf8Headers => text_body(&mut rng, &mut m, target, UTF8_WORDS, b"\r\n"),
            Body::BareLf => text_body(&mut rng, &mut m, target, WORDS, b"\n"),
            Body::MixedEndings => {
                text_body(&mut rng, &mut m, target / 2, WORDS, b"\r\n");
                text_body(&mut rng, &mut m, target / 2, WORDS, b"\n");
                m.extend_from_slice(b"last line with a bare CR\rand then CRLF\r\n");
            }
            Body::LongLine(length) => {
                text_body(&mut rng, &mut m, 200, WORDS, b"\r\n");
                let mut line = Vec::with_capacity(length);
                while line.len() < length {
                    line.extend_from_slice(rng.pick(WORDS).as_bytes());
                    line.push(b' ');
                }
                line.truncate(length);
                m.extend_from_slice(&line);
                m.extend_from_slice(b"\r\n");
                text_body(&mut rng, &mut m, 200, WORDS, b"\r\n");
            }
            _ => {
                text_body(&mut rng, &mut m, target, WORDS, b"\r\n");
                // Lines mail software treats specially.
                m.extend_from_slice(b"From the desk of the sender\r\n.\r\n-- \r\nSender\r\n");
            }
        }
        m
    }
}

fn random_date(rng: &mut SplitMix64) -> InternalDate {
    // 1998-01-01 .. 2025-12-31, in one of several zones.
    let unix = rng.range(883_612_800, 1_767_139_200) as i64;
    InternalDate::new(unix, *rng.pick(&ZONES))
}

fn weighted_folder(rng: &mut SplitMix64, defs: &[&FolderDef], total: u64) -> usize {
    let mut ticket = rng.below(total);
    for (i, d) in defs.iter().enumerate() {
        if ticket < d.weight {
            return i;
        }
        ticket -= d.weight;
    }
    0
}

fn random_body(rng: &mut SplitMix64, sizes: SizeProfile) -> Body {
    if rng.chance(sizes.attachment_per_mille) {
        return Body::Attachment;
    }
    match rng.below(1000) {
        0..=49 => Body::Latin1,
        50..=99 => Body::Utf8Headers,
        100..=129 => Body::EncodedWords,
        130..=149 => Body::BareLf,
        150..=159 => Body::MixedEndings,
        160..=169 => Body::LongLine(rng.range(999, 3_000) as usize),
        _ => Body::Plain,
    }
}

fn random_flags(rng: &mut SplitMix64, folder: &[&str]) -> Vec<Flag> {
    let mut flags = Vec::new();
    let in_folder = |name: &str| folder == [name];
    if rng.chance(750) || in_folder("Sent") {
        flags.push(Flag::Seen);
    }
    if rng.chance(150) {
        flags.push(Flag::Answered);
    }
    if rng.chance(50) {
        flags.push(Flag::Flagged);
    }
    if rng.chance(20) {
        flags.push(Flag::Deleted);
    }
    if in_folder("Drafts") {
        flags.push(Flag::Draft);
    }
    let keyword_chances = [50, if in_folder("Junk") { 800 } else { 30 }, 20, 30, 5];
    for (keyword, chance) in KEYWORDS.iter().zip(keyword_chances) {
        if rng.chance(chance) {
            flags.push(Flag::Keyword((*keyword).to_owned()));
        }
    }
    flags
}

fn text_body(rng: &mut SplitMix64, m: &mut Vec<u8>, target: usize, words: &[&str], eol: &[u8]) {
    let start = m.len();
    let mut line_len = 0;
    while m.len() - start < target {
        let word = rng.pick(words);
        if line_len + word.len() > 72 {
            m.extend_from_slice(eol);
            line_len = 0;
            if rng.chance(120) {
                m.extend_from_slice(eol);
            }
        } else if line_len > 0 {
            m.push(b' ');
            line_len += 1;
        }
        m.extend_from_slice(word.as_bytes());
        line_len += word.len();
    }
    m.extend_from_slice(eol);
}

fn latin1_body(rng: &mut SplitMix64, m: &mut Vec<u8>, target: usize) {
    let start = m.len();
    let mut line_len = 0;
    while m.len() - start < target {
        let word: &[u8] = if rng.chance(300) {
            LATIN1_WORDS[rng.below(LATIN1_WORDS.len() as u64) as usize]
        } else {
            rng.pick(WORDS).as_bytes()
        };
        if line_len + word.len() > 72 {
            m.extend_from_slice(b"\r\n");
            line_len = 0;
        } else if line_len > 0 {
            m.push(b' ');
            line_len += 1;
        }
        m.extend_from_slice(word);
        line_len += word.len();
    }
    m.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_seed_dependent() {
        let a = Corpus::generate(CorpusSpec::small(7).with_messages(60));
        let b = Corpus::generate(CorpusSpec::small(7).with_messages(60));
        let c = Corpus::generate(CorpusSpec::small(8).with_messages(60));
        assert_eq!(
            a.messages().collect::<Vec<_>>(),
            b.messages().collect::<Vec<_>>()
        );
        assert_ne!(a.message(30).bytes, c.message(30).bytes);
    }

    #[test]
    fn catalogue_holds_every_awkward_case() {
        let corpus = Corpus::generate(CorpusSpec::small(1).with_messages(40));
        let m: Vec<SeedMessage> = corpus.messages().collect();
        let has = |i: usize, needle: &[u8]| m[i].bytes.windows(needle.len()).any(|w| w == needle);
        let message_id = |i: usize| -> Option<Vec<u8>> {
            let start = m[i].bytes.windows(12).position(|w| w == b"Message-ID: ")?;
            let end = m[i].bytes[start..].iter().position(|&b| b == b'\r')?;
            Some(m[i].bytes[start..start + end].to_vec())
        };
        assert!(Flag::SYSTEM.iter().all(|f| m[0].flags.contains(f)));
        assert!(message_id(1).is_none(), "message 1 has no Message-ID");
        assert_eq!(message_id(2), message_id(0), "repeated Message-ID");
        assert_ne!(m[2].bytes, m[0].bytes);
        assert_eq!(m[3].bytes, m[0].bytes, "duplicate in the same folder");
        assert_eq!(m[3].folder, m[0].folder);
        assert_eq!(m[4].bytes, m[0].bytes, "duplicate across folders");
        assert_ne!(m[4].folder, m[0].folder);
        assert!(has(5, b"Gr\xfc\xdfe"), "Latin-1 8-bit");
        assert!(
            std::str::from_utf8(&m[6].bytes).is_ok() && !m[6].bytes.is_ascii(),
            "UTF-8"
        );
        assert!(has(7, b"=?UTF-8?B?"));
        assert!(!has(8, b"\r\n") && has(8, b"\n"), "bare LF only");
        assert!(
            has(9, b"\r\n")
                && m[9]
                    .bytes
                    .windows(2)
                    .any(|w| w[1] == b'\n' && w[0] != b'\r')
        );
        let longest = |i: usize| m[i].bytes.split(|&b| b == b'\n').map(<[u8]>::len).max();
        assert!(longest(10) > Some(998));
        assert!(longest(11) > Some(10_000));
        assert!(
            KEYWORDS
                .iter()
                .all(|k| m[12].flags.contains(&Flag::Keyword((*k).into())))
        );
        assert!(!has(13, b"\r\n\r\n"), "header only");
        assert!(m[14].bytes.ends_with(b"\r\n\r\n"), "empty body");
        assert!(has(15, b"Content-Transfer-Encoding: base64"));
        assert_eq!(m[16].internal_date.to_imap(), "31-Dec-1999 23:59:59 -0800");
        assert_eq!(message_id(17), message_id(5));
    }

    #[test]
    fn sizes_follow_the_profile() {
        let corpus = Corpus::generate(CorpusSpec::small(3).with_messages(300));
        let total: usize = corpus.messages().map(|m| m.bytes.len()).sum();
        let average = total / corpus.len();
        assert!((800..12_000).contains(&average), "average {average}");
        assert_eq!(
            corpus.folder_counts().iter().map(|(_, n)| n).sum::<usize>(),
            300
        );
        assert!(
            corpus
                .folders()
                .iter()
                .all(|f| f.path.component_containing('.').is_none())
        );
        let dotted = Corpus::generate(CorpusSpec::small(3).with_dotted_names(true));
        assert!(
            dotted
                .folders()
                .iter()
                .any(|f| f.path.component_containing('.').is_some())
        );
    }

    #[test]
    fn rng_is_stable() {
        // Fixed values: a change here silently changes every corpus and bench figure.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
    }
}
