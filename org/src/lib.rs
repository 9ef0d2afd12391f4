//! The org side of FortrOS: enrollment server, node registry, policy
//! signing and the operator CLI (issue 6). Empty until then.
