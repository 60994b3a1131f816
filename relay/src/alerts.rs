//! Alerts per tenant by e-mail and webhook (being built).
