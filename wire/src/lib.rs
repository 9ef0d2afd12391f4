//! Types shared by the agent and the org: the report, the policy and the
//! envelopes around them, with their signing and verification. No I/O.
