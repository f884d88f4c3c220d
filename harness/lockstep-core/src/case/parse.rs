//! Case-file parser.
