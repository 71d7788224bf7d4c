//! For tests of every crate: scrape a running service's `/metrics` over HTTP and read samples
//! back (series by name and labels). Parsing only; the services' exposition is the registry's.
//! Test code: a failed scrape panics.

#![allow(clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name.
    pub name: String,
    /// Its labels, in order.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

/// A scrape: the text and its samples.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The body as served.
    pub text: String,
    /// Every sample line.
    pub samples: Vec<Sample>,
}

impl Scrape {
    /// Parses the text format (comments skipped).
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_line)
            .collect();
        Self { text: text.to_owned(), samples }
    }

    /// The samples named `name` carrying every label of `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels.iter().all(|(k, v)| s.labels.iter().any(|(sk, sv)| sk == k && sv == v))
        })
    }

    /// The sum of [`Self::matching`] (0 when none match).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    /// Whether any sample is named `name`.
    pub fn has(&self, name: &str) -> bool {
        self.samples.iter().any(|s| s.name == name)
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series, Vec::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            let labels = body
                .split("\",")
                .filter(|p| !p.is_empty())
                .filter_map(|pair| {
                    let (k, v) = pair.split_once("=\"")?;
                    Some((k.to_owned(), v.trim_end_matches('"').to_owned()))
                })
                .collect();
            (name, labels)
        }
    };
    Some(Sample { name: name.to_owned(), labels, value })
}

/// `GET /metrics` from `addr` over HTTP/1.1; panics unless it answers 200 (a test helper).
pub async fn scrape(addr: SocketAddr) -> Scrape {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect to /metrics");
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send the scrape");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read the scrape");
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "scrape answered {head}");
    assert!(head.to_ascii_lowercase().contains("content-type: text/plain"), "{head}");
    Scrape::parse(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_read_back_by_name_and_labels() {
        let text =
            "# HELP x y\n# TYPE x counter\nx{a=\"1\",b=\"two\"} 3\nx{a=\"2\",b=\"two\"} 4\ny 0.5\n";
        let scrape = Scrape::parse(text);
        assert_eq!(scrape.sum("x", &[("b", "two")]), 7.0);
        assert_eq!(scrape.sum("x", &[("a", "1")]), 3.0);
        assert_eq!(scrape.sum("y", &[]), 0.5);
        assert!(scrape.has("y") && !scrape.has("z"));
    }
}
