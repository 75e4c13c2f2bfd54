"""CMS reference data: parsers for the published layouts, validation, the versioned catalog."""
