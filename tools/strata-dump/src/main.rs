//! strata-dump: reads, verifies, measures and salvages a strata store directory.
//!
//! Every command reads the store through `strata::inspect`, the library's own read-only
//! scanners, so the format is parsed in one place. Nothing but `repair` changes a byte, and
//! nothing but `repair` takes the writer lock: the others work beside a live writer and show
//! what it has committed.
//!
//! Exit codes: 0 success, 1 problems found (`verify`), 2 usage or unreadable input.

mod progress;
mod render;

use std::io::{self, BufWriter, Write};
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use strata::inspect::{AsOf, Follower, FrameLocator, Inspector};
use strata::{EventQuery, Timestamp};

/// Exit code for problems found by `verify`.
const EXIT_PROBLEMS: u8 = 1;
/// Exit code for bad usage or an unreadable store.
const EXIT_UNREADABLE: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "strata-dump",
    version,
    about = "Reads, verifies, measures and salvages a strata store directory.",
    long_about = "Reads, verifies, measures and salvages a strata store directory.\n\n\
        Every command but `repair` is read-only and takes no lock: it works while a writer appends, \
        showing what has been committed.\n\n\
        Exit codes: 0 success, 1 problems found (verify), 2 usage or unreadable input."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// One row per segment file: seqs, frames, records, bytes stored and raw, compression ratio, time range, sealed or active.
    Segments {
        /// The store directory.
        dir: PathBuf,
        /// One JSON object per segment per line.
        #[arg(long)]
        json: bool,
    },
    /// Committed events in seq order, filtered: a readable line each, or JSON Lines with --json.
    Records {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        filter: Filter,
        /// At most this many events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
    },
    /// One entity's state (and version) now, as of a time or a version, or its history.
    Entity {
        /// The store directory.
        dir: PathBuf,
        /// The entity id.
        id: String,
        /// Its state as of this time (RFC 3339): after its last event at or before it.
        #[arg(long, value_name = "TS", value_parser = parse_timestamp, conflicts_with = "version")]
        as_of: Option<Timestamp>,
        /// Its state as of this version (1 is the state after its creation).
        #[arg(long, value_name = "N")]
        version: Option<u64>,
        /// Its events instead of its state (up to --as-of or --version when given).
        #[arg(long)]
        history: bool,
        /// The state as one JSON object (null when it did not exist); the history as JSON Lines.
        #[arg(long)]
        json: bool,
    },
    /// Checks every frame CRC, seq continuity, segment headers and trailers, dictionaries, checkpoints and the index against the log; exit 1 with one line per problem (file, offset, reason) when damaged.
    Verify {
        /// The store directory.
        dir: PathBuf,
        /// One JSON object with the counts and the problems.
        #[arg(long)]
        json: bool,
    },
    /// Events by type and kind, entities, deepest entities, bytes raw and stored, compression ratio, dictionaries and checkpoints.
    Stats {
        /// The store directory.
        dir: PathBuf,
        /// One JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Prints new events as a writer appends them, until interrupted (or --limit, or --to-seq, is reached).
    Follow {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        filter: Filter,
        /// Stop after this many events.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// How often to look for new events, in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 200)]
        interval_ms: u64,
    },
    /// The raw bytes of one frame with its fields annotated (stored and computed CRCs), for looking at a damaged frame.
    #[command(group(clap::ArgGroup::new("frame").required(true).args(["seq", "at"])))]
    Hexdump {
        /// The store directory.
        dir: PathBuf,
        /// The committed frame holding this seq.
        #[arg(long, value_name = "N")]
        seq: Option<u64>,
        /// The frame starting at this offset of this segment file (a name in DIR or a path).
        #[arg(long, value_name = "FILE:OFFSET", value_parser = parse_location)]
        at: Option<(PathBuf, u64)>,
        /// Print at most this many of the frame's bytes (0: all).
        #[arg(long, value_name = "N", default_value_t = 4096)]
        max_bytes: usize,
    },
    /// Salvages a store that fails to open: keeps everything before the first bad frame, moves what follows aside into *.salvaged files next to it (never deleted), and prints exactly what was cut. Takes the writer lock.
    Repair {
        /// The store directory.
        dir: PathBuf,
        /// Print what would be cut and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The filters of `records` and `follow`.
#[derive(Args, Debug, Clone)]
struct Filter {
    /// Only events with a seq at or after N.
    #[arg(long, value_name = "N")]
    from_seq: Option<u64>,
    /// Only events with a seq at or before N.
    #[arg(long, value_name = "N")]
    to_seq: Option<u64>,
    /// Only events of this entity.
    #[arg(long, value_name = "ID")]
    entity: Option<String>,
    /// Only events whose type matches: exact (Contact.Qualified) or with * wildcards (Deal.*, *.Qualified).
    #[arg(long = "type", value_name = "PATTERN")]
    event_type: Option<String>,
    /// Only events by this actor.
    #[arg(long, value_name = "ACTOR")]
    actor: Option<String>,
    /// Only events at or after this time (RFC 3339).
    #[arg(long, value_name = "TS", value_parser = parse_timestamp)]
    after: Option<Timestamp>,
    /// Only events before this time (RFC 3339).
    #[arg(long, value_name = "TS", value_parser = parse_timestamp)]
    before: Option<Timestamp>,
    /// JSON Lines: one object per event with seq, id, type, entity, version, timestamp, actor, data, metadata, batch.
    #[arg(long)]
    json: bool,
}

impl Filter {
    fn query(&self, limit: Option<usize>) -> EventQuery {
        let mut q = EventQuery::new().after_seq(self.from_seq.unwrap_or(1).saturating_sub(1));
        if let Some(e) = &self.entity {
            q = q.entity(e.clone());
        }
        if let Some(t) = &self.event_type {
            q = q.event_type(t.clone());
        }
        if let Some(a) = &self.actor {
            q = q.actor(a.clone());
        }
        if let Some(ts) = self.after {
            q = q.after(ts);
        }
        if let Some(ts) = self.before {
            // A parsed timestamp always converts.
            q = q.clone().before(ts).unwrap_or(q);
        }
        if let Some(n) = limit {
            q = q.limit(n);
        }
        q
    }
}

fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    Timestamp::parse(text).map_err(|e| e.to_string())
}

fn parse_location(text: &str) -> Result<(PathBuf, u64), String> {
    let (file, offset) = text.rsplit_once(':').ok_or("expected FILE:OFFSET, e.g. 00000000000000000001.seg:64")?;
    let offset = offset.parse().map_err(|_| format!("{offset:?} is not a byte offset"))?;
    Ok((PathBuf::from(file), offset))
}

/// Why a command failed.
enum Failure {
    Strata(strata::Error),
    Io(io::Error),
}

impl From<strata::Error> for Failure {
    fn from(e: strata::Error) -> Self {
        Failure::Strata(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

type Out<'a> = BufWriter<io::StdoutLock<'a>>;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let result = run(cli.command, &mut out).and_then(|code| {
        out.flush()?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // The reader went away (`| head`): nothing left to say to it.
        Err(Failure::Io(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(failure) => {
            let _ = out.flush();
            let message = match failure {
                Failure::Strata(e) => e.to_string(),
                Failure::Io(e) => format!("writing output: {e}"),
            };
            eprintln!("strata-dump: {}", message.replace('\n', " "));
            ExitCode::from(EXIT_UNREADABLE)
        }
    }
}

fn run(command: Command, out: &mut Out<'_>) -> Result<ExitCode, Failure> {
    match command {
        Command::Segments { dir, json } => {
            let (segments, problems) = Inspector::open(dir)?.segments()?;
            render::segments(out, &segments, &problems, json)?;
        }
        Command::Records { dir, filter, limit } => {
            let inspector = Inspector::open(dir)?;
            let mut failed = None;
            inspector.events(&filter.query(limit), filter.to_seq, &mut |ev| match render::event(out, &ev, filter.json) {
                Ok(()) => Ok(ControlFlow::Continue(())),
                Err(e) => {
                    failed = Some(e);
                    Ok(ControlFlow::Break(()))
                }
            })?;
            if let Some(e) = failed {
                return Err(e.into());
            }
        }
        Command::Entity { dir, id, as_of, version, history, json } => {
            let at = match (as_of, version) {
                (Some(ts), _) => AsOf::Time(ts),
                (None, Some(v)) => AsOf::Version(v),
                (None, None) => AsOf::Latest,
            };
            let inspector = Inspector::open(dir)?;
            if history {
                for ev in inspector.history(&id)? {
                    let within = match at {
                        AsOf::Latest => true,
                        AsOf::Version(v) => ev.version <= v,
                        AsOf::Time(ts) => ev.timestamp <= ts,
                    };
                    if within {
                        render::event(out, &ev, json)?;
                    }
                }
            } else {
                render::entity(out, &id, at, inspector.entity(&id, at)?.as_ref(), json)?;
            }
        }
        Command::Verify { dir, json } => {
            let inspector = Inspector::open(dir)?;
            let mut bar = progress::Bar::for_stderr();
            let report = inspector.verify(Some(&mut |p| bar.update(p)))?;
            bar.finish();
            render::verify(out, &report, json)?;
            if !report.is_clean() {
                return Ok(ExitCode::from(EXIT_PROBLEMS));
            }
        }
        Command::Stats { dir, json } => {
            let stats = Inspector::open(dir)?.stats()?;
            render::stats(out, &stats, json)?;
        }
        Command::Follow { dir, filter, limit, interval_ms } => follow(out, dir, &filter, limit, interval_ms)?,
        Command::Hexdump { dir, seq, at, max_bytes } => {
            // clap makes sure exactly one of --seq and --at is given.
            let locator = match at {
                Some((file, offset)) => FrameLocator::At { file, offset },
                None => FrameLocator::Seq(seq.unwrap_or_default()),
            };
            let dump = Inspector::open(dir)?.frame(&locator)?;
            render::frame(out, &dump, max_bytes)?;
        }
        Command::Repair { dir, dry_run } => {
            let report = strata::inspect::repair(dir, dry_run)?;
            render::repair(out, &report)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Polls the store and prints each new matching event, until interrupted or a bound is met.
fn follow(out: &mut Out<'_>, dir: PathBuf, filter: &Filter, limit: Option<usize>, interval_ms: u64) -> Result<(), Failure> {
    let query = filter.query(None);
    let mut follower = Follower::new(&dir, filter.from_seq)?;
    // Says where following starts, so that a script knows from when it sees every event.
    eprintln!("strata-dump: following {} from seq {}", dir.display(), filter.from_seq.unwrap_or(follower.next_seq()));
    let mut printed = 0usize;
    let limit = limit.unwrap_or(usize::MAX);
    let to_seq = filter.to_seq.unwrap_or(u64::MAX);
    while printed < limit && follower.next_seq() <= to_seq {
        let mut failed = None;
        follower.poll(&mut |ev| {
            if printed < limit && ev.seq <= to_seq && query.matches(&ev) {
                printed += 1;
                if let Err(e) = render::event(out, &ev, filter.json) {
                    failed.get_or_insert(e);
                }
            }
            Ok(())
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        // Each batch of events reaches the reader as soon as it is read.
        out.flush()?;
        if printed < limit && follower.next_seq() <= to_seq {
            std::thread::sleep(Duration::from_millis(interval_ms.max(1)));
        }
    }
    Ok(())
}
