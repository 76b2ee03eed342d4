//! biopay
