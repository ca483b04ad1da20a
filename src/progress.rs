//! Progress while hosts are worked on: a bar on a terminal, occasional
//! plain lines otherwise. Progress goes to stderr and names no host, so
//! the order in which hosts finish never shows in the output.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// Below this many hosts, plain (non-terminal) output prints no progress:
/// the run is over before anyone would read it.
const PLAIN_MIN_HOSTS: usize = 10;

pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    plain: Option<Mutex<PlainProgress>>,
}

struct PlainProgress {
    label: &'static str,
    total: usize,
    done: usize,
    last_tenth: usize,
}

impl Progress {
    /// Progress over `total` hosts, for an action like "planning".
    pub(crate) fn new(label: &'static str, total: usize) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} hosts")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label);
            Progress {
                bar: Some(bar),
                plain: None,
            }
        } else {
            let plain = (total >= PLAIN_MIN_HOSTS).then(|| {
                Mutex::new(PlainProgress {
                    label,
                    total,
                    done: 0,
                    last_tenth: 0,
                })
            });
            Progress { bar: None, plain }
        }
    }

    /// One more host is done.
    pub(crate) fn host_done(&self) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
        if let Some(plain) = &self.plain
            && let Ok(mut plain) = plain.lock()
        {
            plain.done += 1;
            let tenth = plain.done * 10 / plain.total.max(1);
            if tenth > plain.last_tenth {
                plain.last_tenth = tenth;
                eprintln!("{} {}/{} hosts", plain.label, plain.done, plain.total);
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
