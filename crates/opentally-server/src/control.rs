//! The operator's remote controls for a project: rules that stop collection from a range of app
//! versions or keep a fraction of its installs (`opentally project set-collection`). The collector
//! answers each batch with the control for its app version and stores only what the control
//! admits; the SDKs obey the answer so that what would be dropped is not even sent.

use opentally_protocol::{Control, Map, Message};

/// One rule: the app versions it covers and what it asks of them.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRule {
    /// As the operator wrote it (`<1.3`, `>=2, <2.1`), or `*` for every version.
    pub versions: String,
    pub matcher: Option<semver::VersionReq>,
    pub control: Control,
}

/// The text that stands for every version.
pub const EVERY_VERSION: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{0:?} is not a version range: write it as `<1.3`, `>=2.0, <2.1` or `=1.2.4`")]
    BadRange(String),
    #[error("a sample of {0} is not usable: give a fraction of installs above 0 and below 1")]
    BadSample(f64),
    #[error(
        "{0:?} names a pre-release, which no version matches: versions are compared without their pre-release part (1.3.0rc1 counts as 1.3.0)"
    )]
    PreRelease(String),
}

impl CollectionRule {
    /// A rule for `versions` (`None` or `*`: every version).
    pub fn new(versions: Option<&str>, control: Control) -> Result<CollectionRule, RuleError> {
        if let Some(rate) = control.sample
            && !(rate > 0.0 && rate < 1.0)
        {
            return Err(RuleError::BadSample(rate));
        }
        let text = versions.map_or(EVERY_VERSION, str::trim);
        if text == EVERY_VERSION {
            return Ok(CollectionRule {
                versions: text.to_owned(),
                matcher: None,
                control,
            });
        }
        let matcher =
            semver::VersionReq::parse(text).map_err(|_| RuleError::BadRange(text.to_owned()))?;
        if matcher.comparators.iter().any(|c| !c.pre.is_empty()) {
            return Err(RuleError::PreRelease(text.to_owned()));
        }
        // Written one way whatever the spacing, so `< 1.3` and `<1.3` are one rule.
        Ok(CollectionRule {
            versions: matcher.to_string(),
            matcher: Some(matcher),
            control,
        })
    }

    fn covers(&self, version: Option<&semver::Version>) -> bool {
        match (&self.matcher, version) {
            (None, _) => true,
            (Some(m), Some(v)) => m.matches(v),
            (Some(_), None) => false,
        }
    }
}

/// Reads an app version as the rules compare it: from its first digit, up to three numbers
/// (missing ones are 0), and what follows them ignored, so `1.3`, `v1.3.0`, `release-1.3` and
/// Python's `1.3.0rc1` all count as 1.3.0. `None` for a version without a digit, which only
/// rules for every version cover.
pub fn app_version(text: &str) -> Option<semver::Version> {
    // From the first digit: `v1.3`, `=1.2.0`, `release-1.2.0` are read as their numbers.
    let text = &text[text.find(|c: char| c.is_ascii_digit())?..];
    let mut numbers = [0u64; 3];
    let mut found = 0;
    for part in text.split('.').take(3) {
        let digits = part.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            break;
        }
        // A number too large for 64 bits is larger than any range names: the largest there is.
        numbers[found] = part[..digits].parse().unwrap_or(u64::MAX);
        found += 1;
        if digits < part.len() {
            break;
        }
    }
    (found > 0).then(|| semver::Version::new(numbers[0], numbers[1], numbers[2]))
}

/// The app version a message reports in `context.app.version` (a number as its text), or else
/// the one its batch's `context` reports: a message's own `app` block without a version does
/// not hide the batch's.
pub fn message_app_version(m: &Message, batch_context: &Map) -> Option<String> {
    let of = |context: &Map| -> Option<String> {
        match context.get("app")?.get("version")? {
            serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    };
    of(&m.context).or_else(|| of(batch_context))
}

/// The control for an app version: the strictest of the rules that cover it (a stop beats a
/// sample, a smaller sample beats a larger one); `None` when no rule covers it.
pub fn control_for(rules: &[CollectionRule], version: Option<&str>) -> Option<Control> {
    let version = version.and_then(app_version);
    rules
        .iter()
        .filter(|r| r.covers(version.as_ref()))
        .map(|r| r.control)
        .reduce(strictest)
}

/// The stricter of two controls: a stop beats a sample, a smaller sample a larger one.
pub fn strictest(a: Control, b: Control) -> Control {
    if !a.collect || !b.collect {
        Control {
            collect: false,
            sample: None,
        }
    } else {
        Control {
            collect: true,
            sample: match (a.sample, b.sample) {
                (Some(x), Some(y)) => Some(x.min(y)),
                (x, y) => x.or(y),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFF: Control = Control {
        collect: false,
        sample: None,
    };

    fn sample(rate: f64) -> Control {
        Control {
            collect: true,
            sample: Some(rate),
        }
    }

    #[test]
    fn versions_read_as_an_operator_means_them() {
        let v = |s| app_version(s).map(|v| v.to_string());
        assert_eq!(v("1.3").as_deref(), Some("1.3.0"));
        assert_eq!(v("v1.2.9").as_deref(), Some("1.2.9"));
        assert_eq!(v("1.3.0rc1").as_deref(), Some("1.3.0"));
        assert_eq!(v("2024.10.1.post2").as_deref(), Some("2024.10.1"));
        assert_eq!(v("0.13.0-beta.1").as_deref(), Some("0.13.0"));
        assert_eq!(v("nightly"), None);
        assert_eq!(v("=1.2.0").as_deref(), Some("1.2.0"));
        assert_eq!(v("release-1.2.0").as_deref(), Some("1.2.0"));
        assert_eq!(v("^1.2").as_deref(), Some("1.2.0"));
        assert_eq!(v(""), None);
        assert_eq!(
            v("1.2.99999999999999999999").as_deref(),
            Some("1.2.18446744073709551615")
        );
        assert_eq!(v("1.2.0.post1").as_deref(), Some("1.2.0"));
        assert_eq!(v("1.2.1.dev3+g1234abc").as_deref(), Some("1.2.1"));
    }

    #[test]
    fn the_strictest_covering_rule_wins() {
        let rules = vec![
            CollectionRule::new(Some("<1.3"), OFF).unwrap(),
            CollectionRule::new(None, sample(0.5)).unwrap(),
            CollectionRule::new(Some(">=2"), sample(0.1)).unwrap(),
        ];
        assert_eq!(control_for(&rules, Some("1.2.7")), Some(OFF));
        assert_eq!(control_for(&rules, Some("1.3")), Some(sample(0.5)));
        assert_eq!(control_for(&rules, Some("2.4.0")), Some(sample(0.1)));
        // A version that does not read as one: only the rule for every version covers it.
        assert_eq!(control_for(&rules, Some("nightly")), Some(sample(0.5)));
        assert_eq!(control_for(&rules, None), Some(sample(0.5)));
        assert_eq!(control_for(&rules[..1], Some("1.4")), None);
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        assert!(matches!(
            CollectionRule::new(Some("less than 2"), OFF),
            Err(RuleError::BadRange(_))
        ));
        assert!(matches!(
            CollectionRule::new(Some("=1.2.0-rc1"), OFF),
            Err(RuleError::PreRelease(_))
        ));
        assert_eq!(
            CollectionRule::new(Some("< 1.3"), OFF).unwrap().versions,
            CollectionRule::new(Some("<1.3"), OFF).unwrap().versions
        );
        for rate in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(matches!(
                CollectionRule::new(None, sample(rate)),
                Err(RuleError::BadSample(_))
            ));
        }
    }
}
