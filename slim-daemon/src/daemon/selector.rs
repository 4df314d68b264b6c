//! Which containers the daemon watches: those whose labels match every `--label` given.
use std::{collections::BTreeMap, fmt, str::FromStr};

/// One `KEY` (present, any value) or `KEY=VALUE` (exactly that value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelRule {
    pub key: String,
    pub value: Option<String>,
}

impl FromStr for LabelRule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key, value) = match s.split_once('=') {
            Some((k, v)) => (k, Some(v.to_owned())),
            None => (s, None),
        };
        let valid = !key.is_empty()
            && key.len() <= 253
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b))
            && value.as_ref().is_none_or(|v| v.len() <= 4096);
        if valid {
            Ok(LabelRule {
                key: key.to_owned(),
                value,
            })
        } else {
            Err(format!(
                "{s:?} is not KEY or KEY=VALUE (a key of letters, digits, '.', '_', '-' and '/')"
            ))
        }
    }
}

impl fmt::Display for LabelRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}={v}", self.key),
            None => f.write_str(&self.key),
        }
    }
}

/// Every rule must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selector(pub Vec<LabelRule>);

impl Selector {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0
            .iter()
            .all(|rule| match (&rule.value, labels.get(&rule.key)) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(want), Some(got)) => want == got,
            })
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rules: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&rules.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_must_match() {
        let selector = Selector(vec![
            "slimd.observe=true".parse().unwrap(),
            "team".parse().unwrap(),
        ]);
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        assert!(selector.matches(&labels(&[("slimd.observe", "true"), ("team", "x")])));
        assert!(!selector.matches(&labels(&[("slimd.observe", "false"), ("team", "x")])));
        assert!(!selector.matches(&labels(&[("slimd.observe", "true")])));
        for bad in ["", "=x", "a b=c", "k\n=v"] {
            assert!(bad.parse::<LabelRule>().is_err(), "{bad:?}");
        }
    }
}
