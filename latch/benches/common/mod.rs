//! What the latch benches share: the policy their tables run under.

/// One BTNS peer entry for all of 10.0.0.0/8 and a PROTECT policy: every
/// latch the benches create is allowed, and every SA they add fits it.
pub(crate) const POLICY: &str = r#"
[[peer]]
name = "btns"
id = "any"
auth = ["raw_public_key"]
child_sa = "10.0.0.0/8"
btns = true

[[policy]]
name = "default"
action = "protect"
"#;
