//! (filled in by the alerts work)
