//! SSH provisioning of the lab hosts (issue 5).
