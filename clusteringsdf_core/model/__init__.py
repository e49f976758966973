"""The object-compositional SDF model: encodings, fields, density."""
