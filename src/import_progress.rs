//! The importers' progress (`accounts import`, `enrolment import`): a bar
//! with rate and time remaining on a terminal (plain lines otherwise), and
//! a checkpoint file beside the CSV (`FILE.progress`) so that an
//! interrupted import, run again by the same command on the same unchanged
//! file, starts after the rows already stored.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

pub struct ImportProgress {
    checkpoint: PathBuf,
    /// `COMMAND size=… mtime=…` of the file: a checkpoint counts only for
    /// the same command on the same file.
    identity: String,
    resume_after: u64,
    total: u64,
    started: Instant,
    last_drawn: Option<Instant>,
    done: u64,
    terminal: bool,
}

fn identity(file: &Path, command: &str) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot read {}", file.display()))?;
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    Ok(format!("{command} size={} mtime={mtime}", meta.len()))
}

fn count_rows(file: &Path) -> u64 {
    let Ok(input) = std::fs::File::open(file) else {
        return 0;
    };
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(input);
    let mut record = csv::ByteRecord::new();
    let mut n = 0;
    while let Ok(true) = reader.read_byte_record(&mut record) {
        n += 1;
    }
    n
}

fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

impl ImportProgress {
    /// Count the rows and read any checkpoint of an earlier run of
    /// `command` on `file` (saying so on standard error when there is one).
    pub fn start(file: &Path, command: &str) -> anyhow::Result<Self> {
        let mut checkpoint = file.as_os_str().to_owned();
        checkpoint.push(".progress");
        let checkpoint = PathBuf::from(checkpoint);
        let identity = identity(file, command)?;
        let resume_after = std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|text| {
                let (id, rows) = text.trim().rsplit_once(" rows=")?;
                (id == identity).then(|| rows.parse().ok()).flatten()
            })
            .unwrap_or(0);
        if resume_after > 0 {
            eprintln!(
                "resuming: the first {resume_after} rows were imported by an interrupted run of this file; they are not hashed or stored again"
            );
        }
        Ok(Self {
            checkpoint,
            identity,
            resume_after,
            total: count_rows(file),
            started: Instant::now(),
            last_drawn: None,
            done: resume_after,
            terminal: std::io::stderr().is_terminal(),
        })
    }

    /// Data rows an earlier, interrupted run already stored.
    pub fn resume_after(&self) -> u64 {
        self.resume_after
    }

    /// `rows` data rows (from the top of the file) are stored and
    /// committed (called once per batch, at most a second apart while rows
    /// are coming): the checkpoint is written.
    pub fn rows_done(&mut self, rows: u64) {
        self.done = rows;
        self.save(rows);
        let every = if self.terminal {
            Duration::from_millis(250)
        } else {
            Duration::from_secs(10)
        };
        if self.last_drawn.is_none_or(|t| t.elapsed() >= every) {
            self.last_drawn = Some(Instant::now());
            self.draw();
        }
    }

    fn save(&mut self, rows: u64) {
        // Written whole, then renamed: a crash leaves the old or the new one.
        let tmp = self.checkpoint.with_extension("progress.tmp");
        let written = std::fs::write(&tmp, format!("{} rows={rows}\n", self.identity))
            .and_then(|()| std::fs::rename(&tmp, &self.checkpoint));
        if let Err(e) = written {
            tracing::warn!(error = %e, "cannot write the import checkpoint");
        }
    }

    fn draw(&self) {
        let this_run = self.done.saturating_sub(self.resume_after);
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = this_run as f64 / secs;
        let left = self.total.saturating_sub(self.done);
        let eta = if rate > 0.0 {
            duration(Duration::from_secs_f64(left as f64 / rate))
        } else {
            "?".to_owned()
        };
        let share = if self.total > 0 {
            self.done as f64 / self.total as f64
        } else {
            0.0
        };
        if self.terminal {
            let filled = (share * 30.0).round() as usize;
            eprint!(
                "\r[{}{}] {}/{} rows {:>3.0}%  {:.1} rows/s  about {} left   ",
                "#".repeat(filled.min(30)),
                " ".repeat(30 - filled.min(30)),
                self.done,
                self.total,
                share * 100.0,
                rate,
                eta
            );
            let _ = std::io::stderr().flush();
        } else {
            eprintln!(
                "import: {}/{} rows ({:.0}%), {:.1} rows/s, about {} left",
                self.done,
                self.total,
                share * 100.0,
                rate,
                eta
            );
        }
    }

    /// The import ran to the end: the checkpoint goes.
    pub fn finish(&mut self) {
        if self.terminal {
            // Complete the bar; plain output ends with the summary alone.
            self.draw();
            eprintln!();
        }
        let secs = self.started.elapsed().as_secs_f64();
        let rows = self.done.saturating_sub(self.resume_after);
        let skipped = if self.resume_after > 0 {
            format!(
                "; {} rows skipped, finished by an earlier run",
                self.resume_after
            )
        } else {
            String::new()
        };
        eprintln!(
            "import: {rows} rows in {secs:.1} s ({:.1} rows/s){skipped}",
            rows as f64 / secs.max(0.001)
        );
        let _ = std::fs::remove_file(&self.checkpoint);
    }
}
