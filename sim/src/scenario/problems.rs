//! Problems with a scenario and where they are: the checker that collects them, finds
//! the line each is about, and checks numbers and durations against their ranges.

use super::*;

/// One problem with a scenario.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct Problem {
    /// The file, as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Why a scenario was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ScenarioError(pub Vec<Problem>);

/// Largest counts accepted (guards against typos that would eat the machine).
pub const MAX_PEERS: u64 = 10_000_000;
/// Most functions in one scenario.
pub const MAX_FUNCTIONS: usize = 4096;

pub(super) struct Checker<'a> {
    pub(super) file: &'a str,
    pub(super) text: &'a str,
    pub(super) problems: Vec<Problem>,
}

impl Checker<'_> {
    pub(super) fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    /// The line a problem is about: the key the message names, searched within
    /// `span` (a table), or within the `[table]` section for top-level settings.
    pub(super) fn locate(&self, span: &std::ops::Range<usize>, message: &str) -> usize {
        let head = message.split(" = ").next().unwrap_or(message);
        let key = if message.contains(" = ") {
            head.rsplit([':', '.', ' '])
                .find(|k| !k.is_empty())
                .unwrap_or(head)
        } else if message.contains("no region called") {
            "region"
        } else if message.contains("no class called") {
            "class"
        } else if message.contains("no function called") || message.contains("weights") {
            "functions"
        } else if message.contains("defined twice") {
            "name"
        } else if message.contains("two groups") {
            "groups"
        } else if message.contains("session ends") {
            "downtime"
        } else {
            head.split(['.', ' ']).nth(1).unwrap_or("")
        };
        let key = key.split('[').next().unwrap_or(key);
        if !span.is_empty() {
            // An array-of-tables entry's span is its `[[header]]`: the keys follow, up
            // to the next header.
            let from = span.end.min(self.text.len());
            let mut offset = from;
            let mut end = self.text.len();
            for (i, line) in self.text[from..].split_inclusive('\n').enumerate() {
                if i > 0 && line.trim_start().starts_with('[') {
                    end = offset;
                    break;
                }
                offset += line.len();
            }
            return self.find_key(span.start, end, key);
        }
        let header = format!("[{}]", head.split('.').next().unwrap_or(""));
        let mut offset = 0;
        let mut section = None;
        for line in self.text.split_inclusive('\n') {
            if let Some(from) = section
                && line.trim_start().starts_with('[')
            {
                return self.find_key(from, offset, key);
            }
            if section.is_none() && line.trim() == header {
                section = Some(offset);
            }
            offset += line.len();
        }
        section.map_or(1, |from| self.find_key(from, self.text.len(), key))
    }

    pub(super) fn find_key(&self, start: usize, end: usize, key: &str) -> usize {
        if key.is_empty() {
            return self.line_of(start);
        }
        let mut offset = start;
        for line in self
            .text
            .get(start..end)
            .unwrap_or("")
            .split_inclusive('\n')
        {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix(key)
                && rest.trim_start().starts_with('=')
            {
                return self.line_of(offset);
            }
            offset += line.len();
        }
        self.line_of(start)
    }

    pub(super) fn at(&mut self, span: std::ops::Range<usize>, message: impl Into<String>) {
        let message = message.into();
        let line = self.locate(&span, &message);
        self.problems.push(Problem {
            file: self.file.to_string(),
            line,
            message,
        });
    }

    /// Requires `v` to be finite and within `range`.
    pub(super) fn num(
        &mut self,
        span: &std::ops::Range<usize>,
        what: &str,
        v: f64,
        lo: f64,
        hi: f64,
    ) {
        if !(v.is_finite() && v >= lo && v <= hi) {
            self.at(
                span.clone(),
                format!("{what} = {v} is out of range {lo}..={hi}"),
            );
        }
    }

    pub(super) fn duration(&mut self, span: &std::ops::Range<usize>, what: &str, d: Duration) {
        match d {
            Duration::Forever => {}
            Duration::Exponential { mean_s } => self.num(span, what, mean_s, 1e-3, 1e9),
            Duration::Lognormal { median_s, sigma } => {
                self.num(span, what, median_s, 1e-3, 1e9);
                self.num(span, &format!("{what}.sigma"), sigma, 0.0, 10.0);
            }
            Duration::Weibull { scale_s, shape } => {
                self.num(span, what, scale_s, 1e-3, 1e9);
                self.num(span, &format!("{what}.shape"), shape, 0.05, 20.0);
            }
        }
    }
}
