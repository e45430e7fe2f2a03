//! The maintainer's remote controls, carried in the batch response so that no extra request is
//! ever made: stop collecting from an app version, or keep a stable fraction of its installs.
//! The collector enforces them on what it stores; the SDKs obey them to save the traffic.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the collector asks of the installs of one app version. A response without `control`
/// means "collect as usual"; clients that do not know the field ignore it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Control {
    /// `false`: stop sending and clear the spool.
    #[serde(default = "yes")]
    pub collect: bool,
    /// Keep this fraction of installs (0 to 1), chosen by [`sampled_in`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<f64>,
}

fn yes() -> bool {
    true
}

impl Control {
    /// Whether the install with this id may send (and the collector store) its events.
    pub fn admits(&self, install_id: &str) -> bool {
        self.collect && self.sample.is_none_or(|rate| sampled_in(install_id, rate))
    }
}

/// The stable place of an install among all installs, in [0, 1): the first 53 bits of
/// SHA-256(`"opentally-sample:" + install id`). Every SDK and the collector compute the same
/// value, so an install kept at 10 % is kept at 20 % too.
pub fn sample_point(install_id: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update(b"opentally-sample:")
        .chain_update(install_id.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    // 53 bits are exact in an f64, so every language gets the same number.
    #[allow(clippy::cast_precision_loss)]
    let point = (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64;
    point
}

/// Whether an install is in a sample that keeps `rate` of all installs.
pub fn sampled_in(install_id: &str, rate: f64) -> bool {
    sample_point(install_id) < rate
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values Python's `hashlib` gives for the same definition; the Node SDK's test pins
    /// them too: a change here would sample different installs in different languages.
    #[test]
    fn sample_points_are_pinned() {
        let points = ["0f6c2a1e-8c3b-4f5d-9a7e-2b1c3d4e5f60", "a"]
            .map(|id| format!("{:.12}", sample_point(id)));
        assert_eq!(points, ["0.942685339496", "0.878701247056"]);
    }

    #[test]
    fn samples_nest_and_keep_their_fraction() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("install-{i}")).collect();
        let kept =
            |rate: f64| -> Vec<&String> { ids.iter().filter(|id| sampled_in(id, rate)).collect() };
        let ten = kept(0.1);
        let twenty = kept(0.2);
        // Binomial(20 000, 0.1): the standard deviation is 42; 5 of them either side.
        assert!((1_790..=2_210).contains(&ten.len()), "{}", ten.len());
        assert!(ten.iter().all(|id| twenty.contains(id)));
        assert!(kept(0.0).is_empty());
        assert_eq!(kept(1.0).len(), ids.len());
    }

    #[test]
    fn a_control_reads_as_the_design_writes_it() {
        let off: Control = serde_json::from_str(r#"{"collect":false}"#).unwrap();
        assert!(!off.admits("a"));
        let sample: Control = serde_json::from_str(r#"{"sample":0.0}"#).unwrap();
        assert!(sample.collect && !sample.admits("a"));
        assert_eq!(
            serde_json::to_string(&Control {
                collect: true,
                sample: Some(0.5)
            })
            .unwrap(),
            r#"{"collect":true,"sample":0.5}"#
        );
    }
}
