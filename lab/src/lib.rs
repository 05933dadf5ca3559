//! The seed's four hosts on one machine with network namespaces (issue 4).
