//! A deterministic, seedable CRM-like workload for the comparison benchmark.
//!
//! [`generate`] turns a [`WorkloadConfig`] into a `Vec<Op>`: contacts and deals are
//! created, updated one to three fields at a time, now and then deleted and restored,
//! and a few "deep" entities (`deep_{depth}`) receive a long run of updates spread
//! evenly through the whole stream. The same config always yields the same ops, and
//! every op is valid at its position (create before update, no update or delete of a
//! deleted entity, restore only of a deleted one).
//!
//! Values are meant to look like real CRM data (names from small lists, emails derived
//! from names, amounts as numbers, stages from a fixed set) so that compression figures
//! mean something.
//!
//! The module also holds the reference fold: [`merge_patch`] (RFC 7396 JSON Merge Patch)
//! and [`EntityState`], which every store under comparison must agree with.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value, json};

/// One operation of the workload, in the order it must be applied.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create entity `id` of kind `kind` (`"contact"` or `"deal"`) with its full data.
    Create {
        /// The entity kind.
        kind: &'static str,
        /// The entity id, unique across the workload.
        id: String,
        /// The initial state: a JSON object.
        data: Value,
    },
    /// Apply `patch` (an RFC 7396 merge patch) to a live entity.
    Update {
        /// The entity id.
        id: String,
        /// A JSON object: `null` members remove fields, objects merge recursively.
        patch: Value,
        /// A custom event verb (such as `"Qualified"`), or `None` for a plain update.
        verb: Option<&'static str>,
    },
    /// Delete a live entity; its state is kept so that a restore brings it back.
    Delete {
        /// The entity id.
        id: String,
    },
    /// Restore a deleted entity to the state it had when deleted.
    Restore {
        /// The entity id.
        id: String,
    },
}

/// Event type recorded for [`Op::Create`].
pub const CREATED: &str = "Created";
/// Event type recorded for an [`Op::Update`] without a verb.
pub const UPDATED: &str = "Updated";
/// Event type recorded for [`Op::Delete`].
pub const DELETED: &str = "Deleted";
/// Event type recorded for [`Op::Restore`].
pub const RESTORED: &str = "Restored";

impl Op {
    /// The id of the entity this op touches.
    pub fn entity(&self) -> &str {
        match self {
            Op::Create { id, .. } | Op::Update { id, .. } | Op::Delete { id } | Op::Restore { id } => id,
        }
    }

    /// The event type a store records for this op: [`CREATED`], the update's verb or
    /// [`UPDATED`], [`DELETED`] or [`RESTORED`].
    pub fn event_type(&self) -> &'static str {
        match self {
            Op::Create { .. } => CREATED,
            Op::Update { verb, .. } => verb.unwrap_or(UPDATED),
            Op::Delete { .. } => DELETED,
            Op::Restore { .. } => RESTORED,
        }
    }

    /// What the op does to an entity's state, independent of any custom verb.
    pub fn event_kind(&self) -> EventKind {
        match self {
            Op::Create { .. } => EventKind::Create,
            Op::Update { .. } => EventKind::Update,
            Op::Delete { .. } => EventKind::Delete,
            Op::Restore { .. } => EventKind::Restore,
        }
    }

    /// The op's JSON payload: the data of a create, the patch of an update, and `None`
    /// for deletes and restores.
    pub fn payload(&self) -> Option<&Value> {
        match self {
            Op::Create { data, .. } => Some(data),
            Op::Update { patch, .. } => Some(patch),
            Op::Delete { .. } | Op::Restore { .. } => None,
        }
    }
}

/// The effect of an event on an entity's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// Replaces the state with the event's data and makes the entity live.
    Create,
    /// Merge-patches the state with the event's data.
    Update,
    /// Marks the entity deleted (its data is kept).
    Delete,
    /// Marks the entity live again.
    Restore,
}

impl EventKind {
    /// The kind of a stored event type: [`CREATED`], [`DELETED`] and [`RESTORED`] map
    /// to their kinds, and anything else (a plain update or a custom verb) is an update.
    pub fn from_event_type(event_type: &str) -> Self {
        match event_type {
            CREATED => EventKind::Create,
            DELETED => EventKind::Delete,
            RESTORED => EventKind::Restore,
            _ => EventKind::Update,
        }
    }
}

/// Applies an RFC 7396 JSON Merge Patch to `target` in place.
///
/// If `patch` is an object, each member is merged into `target` (which becomes an
/// object first if it is not one): a `null` member removes the field, an object member
/// merges recursively, and anything else replaces the field. A non-object `patch`
/// replaces `target` whole.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(target) = target else {
        unreachable!("target was just made an object");
    };
    for (key, value) in patch {
        if value.is_null() {
            target.remove(key);
        } else {
            merge_patch(target.entry(key.as_str()).or_insert(Value::Null), value);
        }
    }
}

/// The folded state of one entity: the reference every store must reproduce.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntityState {
    /// The entity's data (kept while deleted, so a restore brings it back).
    pub data: Value,
    /// Whether the last create/delete/restore left the entity deleted.
    pub deleted: bool,
    /// How many events have been folded in: the entity's version.
    pub version: u64,
}

impl EntityState {
    /// Folds one event into the state. `data` is the create's data or the update's
    /// patch; it is ignored for deletes and restores.
    pub fn apply(&mut self, kind: EventKind, data: &Value) {
        match kind {
            EventKind::Create => {
                self.data = data.clone();
                self.deleted = false;
            }
            EventKind::Update => merge_patch(&mut self.data, data),
            EventKind::Delete => self.deleted = true,
            EventKind::Restore => self.deleted = false,
        }
        self.version += 1;
    }

    /// Like [`EntityState::apply`], but takes ownership of `data`, avoiding a clone on
    /// creates.
    pub fn apply_owned(&mut self, kind: EventKind, data: Value) {
        if kind == EventKind::Create {
            self.data = data;
            self.deleted = false;
            self.version += 1;
        } else {
            self.apply(kind, &data);
        }
    }

    /// The visible state: `None` while deleted or before any event.
    pub fn current(&self) -> Option<&Value> {
        (self.version > 0 && !self.deleted).then_some(&self.data)
    }
}

/// Folds a whole workload in memory: the reference state of every entity.
pub fn fold_ops(ops: &[Op]) -> HashMap<String, EntityState> {
    let mut states: HashMap<String, EntityState> = HashMap::new();
    for op in ops {
        let state = states.entry(op.entity().to_owned()).or_default();
        state.apply(op.event_kind(), op.payload().unwrap_or(&Value::Null));
    }
    states
}

/// What to generate. [`WorkloadConfig::full`] and [`WorkloadConfig::quick`] are the two
/// standard sizes; `Default` is the full one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Exactly how many ops to generate.
    pub total_events: usize,
    /// How many ordinary entities (contacts and deals) to create; the deep entities
    /// come on top of these.
    pub entities: usize,
    /// One deep entity per depth, named `deep_{depth}`, receiving exactly `depth`
    /// events (one create and `depth - 1` updates) spread through the workload.
    pub deep_depths: Vec<usize>,
    /// The PRNG seed: the same config always yields the same ops.
    pub seed: u64,
}

impl WorkloadConfig {
    /// The full run: 1,000,000 events over 50,000 ordinary entities plus two deep ones
    /// (100 and 10,000 versions).
    pub fn full() -> Self {
        WorkloadConfig { total_events: 1_000_000, entities: 50_000, deep_depths: vec![100, 10_000], seed: 0x5EED_CAFE }
    }

    /// The quick run: 100,000 events over 5,000 ordinary entities plus the same two
    /// deep ones.
    pub fn quick() -> Self {
        WorkloadConfig { total_events: 100_000, entities: 5_000, ..Self::full() }
    }

    /// The id of the deep entity for `deep_depths[index]`: `deep_{depth}`, with
    /// `_{index}` appended if an earlier entry has the same depth.
    pub fn deep_id(&self, index: usize) -> String {
        let depth = self.deep_depths[index];
        if self.deep_depths[..index].contains(&depth) { format!("deep_{depth}_{index}") } else { format!("deep_{depth}") }
    }
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        Self::full()
    }
}

/// A [`WorkloadConfig`] that cannot be generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig(pub String);

impl fmt::Display for InvalidConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid workload config: {}", self.0)
    }
}

impl std::error::Error for InvalidConfig {}

/// SplitMix64: a tiny, fast, deterministic PRNG (Steele, Lea and Flood, 2014).
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` must be non-zero), by Lemire's multiply-shift.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below((hi - lo + 1) as usize) as u64
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        // 53 random bits make a uniform float in [0, 1).
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// A uniformly chosen element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[rustfmt::skip]
const FIRST_NAMES: &[&str] = &[
    "Ada", "Alan", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "John",
    "Radia", "Edsger", "Katherine", "Donald", "Sophie", "Tim", "Hedy", "Vint", "Anita", "Guido",
    "Maria", "James", "Priya", "Chen", "Fatima", "Lukas", "Aiko", "Diego", "Olga", "Kwame",
];
#[rustfmt::skip]
const LAST_NAMES: &[&str] = &[
    "Lovelace", "Turing", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson",
    "Allen", "Backus", "Perlman", "Dijkstra", "Johnson", "Knuth", "Wilson", "Berners-Lee",
    "Lamarr", "Cerf", "Borg", "Rossum", "Garcia", "Smith", "Patel", "Wang", "Khan", "Schmidt",
    "Tanaka", "Fernandez", "Ivanova", "Mensah",
];
const COMPANIES: &[&str] = &[
    "Northwind Traders",
    "Contoso",
    "Acme Corporation",
    "Globex",
    "Initech",
    "Umbrella Health",
    "Stark Industries",
    "Wayne Logistics",
    "Hooli",
    "Vandelay Imports",
    "Soylent Foods",
    "Tyrell Systems",
    "Cyberdyne",
    "Wonka Confections",
    "Oceanic Airlines",
    "Massive Dynamic",
    "Pied Piper",
    "Blue Sun",
    "Gringotts Finance",
    "Monsters Inc",
];
const TITLES: &[&str] = &[
    "CEO",
    "CTO",
    "VP Engineering",
    "Head of Procurement",
    "Operations Manager",
    "IT Director",
    "Product Manager",
    "Finance Lead",
    "Software Engineer",
    "Office Manager",
];
const OWNERS: &[&str] = &[
    "maria.garcia",
    "james.smith",
    "priya.patel",
    "chen.wang",
    "fatima.khan",
    "lukas.schmidt",
    "aiko.tanaka",
    "diego.fernandez",
    "olga.ivanova",
    "kwame.mensah",
    "sophie.wilson",
    "tim.allen",
];
const SOURCES: &[&str] = &["website", "referral", "webinar", "trade_show", "cold_call", "linkedin", "partner", "newsletter"];
const CITIES: &[(&str, &str)] = &[
    ("Austin", "US"),
    ("Boston", "US"),
    ("San Francisco", "US"),
    ("Toronto", "CA"),
    ("London", "GB"),
    ("Manchester", "GB"),
    ("Berlin", "DE"),
    ("Munich", "DE"),
    ("Paris", "FR"),
    ("Madrid", "ES"),
    ("Stockholm", "SE"),
    ("Tokyo", "JP"),
    ("Singapore", "SG"),
    ("Sydney", "AU"),
    ("Accra", "GH"),
];
const TAGS: &[&str] = &["vip", "newsletter", "enterprise", "smb", "renewal", "churn_risk", "champion", "decision_maker"];
const PRODUCTS: &[&str] = &[
    "Platform license",
    "Support renewal",
    "Analytics add-on",
    "Onboarding package",
    "Enterprise upgrade",
    "Data migration",
    "Training seats",
];
const CONTACT_STAGES: &[&str] = &["lead", "contacted", "qualified", "customer", "churned"];
const DEAL_STAGES: &[&str] = &["prospecting", "qualification", "proposal", "negotiation", "closed_won", "closed_lost"];
/// Win probability (percent) that goes with each deal stage.
const DEAL_PROBABILITY: &[u64] = &[10, 25, 50, 75, 100, 0];
const NOTES: &[&str] = &[
    "Called {first}, left a voicemail.",
    "Sent pricing for {product} to {first}.",
    "{first} asked for a demo next week.",
    "{company} is evaluating two competitors.",
    "Intro meeting with {first} {last} went well.",
    "Budget for {product} approved this quarter.",
    "{first} is out of office until Monday.",
    "Follow-up email sent after the webinar.",
    "{company} wants a security review before signing.",
    "Discussed rollout timeline with {first}.",
    "Contract draft shared with {company} legal.",
    "{first} introduced us to their CTO.",
];
const CREATED_NOTES: &[&str] =
    &["Created from the {source} form.", "Imported from the {source} list.", "Added by {owner} after a {source} lead."];

/// Which of the two ordinary entity kinds an entity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Contact,
    Deal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Contact => "contact",
            Kind::Deal => "deal",
        }
    }

    fn stages(self) -> &'static [&'static str] {
        match self {
            Kind::Contact => CONTACT_STAGES,
            Kind::Deal => DEAL_STAGES,
        }
    }
}

/// What the generator remembers about an entity to keep its updates coherent.
#[derive(Debug, Clone)]
struct Meta {
    id: String,
    kind: Kind,
    first: u8,
    last: u8,
    company: u8,
    stage: u8,
    deleted: bool,
}

/// The state of one generation run.
struct Generator {
    rng: SplitMix64,
    /// Ordinary entities, in creation order.
    entities: Vec<Meta>,
    /// Deep entities (none deleted, ever).
    deep: Vec<Meta>,
    contacts: usize,
    deals: usize,
}

impl Generator {
    fn new_meta(&mut self, id: String, kind: Kind) -> Meta {
        Meta {
            id,
            kind,
            first: self.rng.below(FIRST_NAMES.len()) as u8,
            last: self.rng.below(LAST_NAMES.len()) as u8,
            company: self.rng.below(COMPANIES.len()) as u8,
            stage: 0,
            deleted: false,
        }
    }

    /// Creates the next ordinary entity: about 60% contacts, 40% deals.
    fn create_ordinary(&mut self) -> Op {
        let kind = if self.contacts == 0 || self.rng.chance(0.6) { Kind::Contact } else { Kind::Deal };
        let id = match kind {
            Kind::Contact => {
                self.contacts += 1;
                format!("contact_{}", self.contacts - 1)
            }
            Kind::Deal => {
                self.deals += 1;
                format!("deal_{}", self.deals - 1)
            }
        };
        let meta = self.new_meta(id, kind);
        let op = self.create_op(&meta);
        self.entities.push(meta);
        op
    }

    fn create_op(&mut self, meta: &Meta) -> Op {
        let data = match meta.kind {
            Kind::Contact => self.contact_data(meta),
            Kind::Deal => self.deal_data(meta),
        };
        Op::Create { kind: meta.kind.name(), id: meta.id.clone(), data }
    }

    fn contact_data(&mut self, meta: &Meta) -> Value {
        let first = FIRST_NAMES[usize::from(meta.first)];
        let last = LAST_NAMES[usize::from(meta.last)];
        let company = COMPANIES[usize::from(meta.company)];
        let (city, country) = *self.rng.pick(CITIES);
        let source = *self.rng.pick(SOURCES);
        let owner = *self.rng.pick(OWNERS);
        let mut data = json!({
            "name": format!("{first} {last}"),
            "email": email(first, last, company),
            "phone": self.phone(),
            "company": company,
            "title": *self.rng.pick(TITLES),
            "stage": CONTACT_STAGES[0],
            "owner": owner,
            "score": self.rng.range(0, 60),
            "source": source,
            "address": { "city": city, "country": country },
            "note": self.created_note(source, owner),
        });
        if self.rng.chance(0.4) {
            data["tags"] = json!([*self.rng.pick(TAGS)]);
        }
        data
    }

    fn deal_data(&mut self, meta: &Meta) -> Value {
        let company = COMPANIES[usize::from(meta.company)];
        let product = *self.rng.pick(PRODUCTS);
        let source = *self.rng.pick(SOURCES);
        let owner = *self.rng.pick(OWNERS);
        // Deals usually point at an existing contact.
        let contact = if self.contacts > 0 { Value::String(format!("contact_{}", self.rng.below(self.contacts))) } else { Value::Null };
        json!({
            "name": format!("{company} - {product}"),
            "company": company,
            "contact": contact,
            "stage": DEAL_STAGES[0],
            "owner": owner,
            "amount": self.amount(),
            "currency": "USD",
            "probability": DEAL_PROBABILITY[0],
            "close_date": self.date(),
            "source": source,
            "note": self.created_note(source, owner),
        })
    }

    fn phone(&mut self) -> String {
        format!("+1-{}-555-{:04}", self.rng.range(201, 989), self.rng.range(100, 9999))
    }

    /// A deal amount in dollars: round-ish numbers, mostly a few thousand.
    fn amount(&mut self) -> u64 {
        let step = *self.rng.pick(&[100u64, 500, 1000]);
        self.rng.range(5, 600) * step
    }

    fn date(&mut self) -> String {
        format!("2026-{:02}-{:02}", self.rng.range(1, 12), self.rng.range(1, 28))
    }

    fn created_note(&mut self, source: &str, owner: &str) -> String {
        self.rng.pick(CREATED_NOTES).replace("{source}", &source.replace('_', " ")).replace("{owner}", owner)
    }

    fn note(&mut self, meta: &Meta) -> String {
        let template = *self.rng.pick(NOTES);
        let product = *self.rng.pick(PRODUCTS);
        template
            .replace("{first}", FIRST_NAMES[usize::from(meta.first)])
            .replace("{last}", LAST_NAMES[usize::from(meta.last)])
            .replace("{company}", COMPANIES[usize::from(meta.company)])
            .replace("{product}", product)
    }

    /// An update of one to three fields; moving a contact to `qualified` or a deal to
    /// `qualification` carries the custom verb `Qualified`.
    fn update_op(&mut self, meta: &mut Meta) -> Op {
        const CONTACT_FIELDS: usize = 8;
        const DEAL_FIELDS: usize = 6;
        let choices = match meta.kind {
            Kind::Contact => CONTACT_FIELDS,
            Kind::Deal => DEAL_FIELDS,
        };
        let count = 1 + self.rng.below(3);
        let mut chosen = [usize::MAX; 3];
        for slot in 0..count {
            // Field 0 (stage) and 1 (score/amount) are the most common changes.
            let field = loop {
                let f = if self.rng.chance(0.5) { self.rng.below(2) } else { self.rng.below(choices) };
                if !chosen[..slot].contains(&f) {
                    break f;
                }
            };
            chosen[slot] = field;
        }

        let mut patch = Map::new();
        let mut verb = None;
        for &field in &chosen[..count] {
            match (meta.kind, field) {
                (_, 0) => {
                    let stage = self.next_stage(meta);
                    meta.stage = stage;
                    let name = meta.kind.stages()[usize::from(stage)];
                    if name == "qualified" || name == "qualification" {
                        verb = Some("Qualified");
                    }
                    patch.insert("stage".into(), name.into());
                    if meta.kind == Kind::Deal {
                        patch.insert("probability".into(), DEAL_PROBABILITY[usize::from(stage)].into());
                    }
                }
                (Kind::Contact, 1) => {
                    patch.insert("score".into(), self.rng.range(0, 100).into());
                }
                (Kind::Deal, 1) => {
                    patch.insert("amount".into(), self.amount().into());
                }
                (_, 2) => {
                    patch.insert("owner".into(), (*self.rng.pick(OWNERS)).into());
                }
                (_, 3) => {
                    patch.insert("note".into(), self.note(meta).into());
                }
                (Kind::Contact, 4) => {
                    // Sometimes the number is dropped altogether (a null removes it).
                    let phone = if self.rng.chance(0.2) { Value::Null } else { self.phone().into() };
                    patch.insert("phone".into(), phone);
                }
                (Kind::Contact, 5) => {
                    // A nested partial object: only the city changes.
                    let (city, _) = *self.rng.pick(CITIES);
                    patch.insert("address".into(), json!({ "city": city }));
                }
                (Kind::Contact, 6) => {
                    patch.insert("title".into(), (*self.rng.pick(TITLES)).into());
                }
                (Kind::Contact, _) => {
                    let tags: Vec<&str> = (0..self.rng.range(1, 3)).map(|_| *self.rng.pick(TAGS)).collect();
                    patch.insert("tags".into(), json!(tags));
                }
                (Kind::Deal, 4) => {
                    patch.insert("close_date".into(), self.date().into());
                }
                (Kind::Deal, _) => {
                    let product = *self.rng.pick(PRODUCTS);
                    let company = COMPANIES[usize::from(meta.company)];
                    patch.insert("name".into(), format!("{company} - {product}").into());
                }
            }
        }
        Op::Update { id: meta.id.clone(), patch: Value::Object(patch), verb }
    }

    /// Stages move forward: a deal in negotiation is won or lost, a closed deal reopens
    /// (a renewal), and a churned contact becomes a lead again.
    fn next_stage(&mut self, meta: &Meta) -> u8 {
        let last = meta.kind.stages().len() as u8 - 1;
        match (meta.kind, meta.stage) {
            (Kind::Deal, 3) => {
                if self.rng.chance(0.6) {
                    4
                } else {
                    5
                }
            }
            (Kind::Deal, s) if s >= 4 => 0,
            (_, s) if s >= last => 0,
            (_, s) => s + 1,
        }
    }

    /// An update, delete or restore of an existing ordinary entity.
    fn mutate_ordinary(&mut self) -> Op {
        let n = self.entities.len();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // Recent entities are busier: a third of the picks go to the newest 5%.
            let index = if self.rng.chance(0.33) {
                let recent = (n / 20).max(1);
                n - 1 - self.rng.below(recent)
            } else {
                self.rng.below(n)
            };
            if self.entities[index].deleted {
                if attempts > 8 || self.rng.chance(0.25) {
                    self.entities[index].deleted = false;
                    return Op::Restore { id: self.entities[index].id.clone() };
                }
                continue;
            }
            if self.rng.chance(0.004) {
                self.entities[index].deleted = true;
                return Op::Delete { id: self.entities[index].id.clone() };
            }
            let mut meta = self.entities[index].clone();
            let op = self.update_op(&mut meta);
            self.entities[index] = meta;
            return op;
        }
    }

    /// Event `k` (0 = the create) of deep entity `j`.
    fn deep_op(&mut self, j: usize, k: usize) -> Op {
        let mut meta = self.deep[j].clone();
        let op = if k == 0 { self.create_op(&meta) } else { self.update_op(&mut meta) };
        self.deep[j] = meta;
        op
    }
}

/// A work email derived from the name and company: `ada.lovelace@northwindtraders.com`.
fn email(first: &str, last: &str, company: &str) -> String {
    let domain: String = company.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    format!("{}.{}@{domain}.com", first.to_ascii_lowercase(), last.to_ascii_lowercase())
}

/// Generates the workload described by `config`: exactly `total_events` ops, valid in
/// order, the same for the same config.
///
/// Ordinary creates are spread over the first 80% of the stream (ahead of the
/// updates that need them), and each deep entity's events are spaced evenly over the
/// whole stream.
pub fn generate(config: &WorkloadConfig) -> Result<Vec<Op>, InvalidConfig> {
    let total = config.total_events;
    let deep_events: usize = config.deep_depths.iter().sum();
    let required = config.entities + deep_events;
    if required > total {
        return Err(InvalidConfig(format!(
            "{} entities and {deep_events} deep events need at least {required} events, \
             but total_events is {total}",
            config.entities
        )));
    }
    if config.entities == 0 && required < total {
        return Err(InvalidConfig("updates beyond the deep entities need at least one ordinary entity".into()));
    }
    if config.deep_depths.contains(&0) {
        return Err(InvalidConfig("a deep depth must be at least 1".into()));
    }

    let mut generator = Generator {
        rng: SplitMix64::new(config.seed),
        entities: Vec::with_capacity(config.entities),
        deep: Vec::new(),
        contacts: 0,
        deals: 0,
    };
    for index in 0..config.deep_depths.len() {
        let meta = generator.new_meta(config.deep_id(index), Kind::Contact);
        generator.deep.push(meta);
    }
    // next_event[j]: how many of deep entity j's events have been emitted.
    let mut next_event = vec![0usize; config.deep_depths.len()];
    let deep_due = |j: usize, k: usize| k * total / config.deep_depths[j];
    let create_horizon = (total as f64 * 0.8).max(1.0);

    let mut ops = Vec::with_capacity(total);
    let mut deep_left = deep_events;
    for step in 0..total {
        // The deep entity whose next event is due soonest, if any is left.
        let soonest = (0..next_event.len()).filter(|&j| next_event[j] < config.deep_depths[j]).min_by_key(|&j| deep_due(j, next_event[j]));
        let creates_left = config.entities - generator.entities.len();
        let forced = creates_left + deep_left >= total - step;
        let create_target = ((step + 1) as f64 * config.entities as f64 / create_horizon).ceil();

        let op = match soonest {
            Some(j) if forced || deep_due(j, next_event[j]) <= step => {
                let k = next_event[j];
                next_event[j] += 1;
                deep_left -= 1;
                generator.deep_op(j, k)
            }
            _ if creates_left > 0 && (forced || generator.entities.is_empty() || (generator.entities.len() as f64) < create_target) => {
                generator.create_ordinary()
            }
            _ => generator.mutate_ordinary(),
        };
        ops.push(op);
    }
    debug_assert_eq!(deep_left, 0);
    debug_assert_eq!(generator.entities.len(), config.entities);
    Ok(ops)
}

/// Checks that every op is valid at its position: creates are of new ids, updates and
/// deletes touch live entities, restores touch deleted ones. Returns the first problem.
pub fn validate(ops: &[Op]) -> Result<(), String> {
    // Per entity: Some(true) live, Some(false) deleted, absent never created.
    let mut live: HashMap<&str, bool> = HashMap::new();
    for (index, op) in ops.iter().enumerate() {
        let id = op.entity();
        let state = live.get(id).copied();
        let next = match (op, state) {
            (Op::Create { data, .. }, None) if data.is_object() => true,
            (Op::Update { patch, .. }, Some(true)) if patch.is_object() => true,
            (Op::Delete { .. }, Some(true)) => false,
            (Op::Restore { .. }, Some(false)) => true,
            _ => return Err(format!("op {index} is invalid here ({state:?}): {op:?}")),
        };
        live.insert(id, next);
    }
    Ok(())
}
