//! Rules of the `storage` resources.

plain_strategy!(
    /// Rules of `CsiDriver`.
    CsiDriverStrategy
);
plain_strategy!(
    /// Rules of `CsiNode`.
    CsiNodeStrategy
);
plain_strategy!(
    /// Rules of `CsiStorageCapacity`.
    CsiStorageCapacityStrategy
);
plain_strategy!(
    /// Rules of `StorageClass`.
    StorageClassStrategy
);
plain_strategy!(
    /// Rules of `VolumeAttachment`.
    VolumeAttachmentStrategy
);
