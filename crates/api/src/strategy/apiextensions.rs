//! Rules of the `apiextensions` resources.

plain_strategy!(
    /// Rules of `CustomResourceDefinition`.
    CustomResourceDefinitionStrategy
);
