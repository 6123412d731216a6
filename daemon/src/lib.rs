//! strackt
