//! The public contract of the clinic platform, generated from `proto/` by `build.rs`.
//!
//! `identity::v1` is served by identity-service, `clinic::v1` by clinic-service. Both services
//! hand [`FILE_DESCRIPTOR_SET`] to gRPC server reflection so grpcurl can explore them.

/// Encoded `FileDescriptorSet` of every `.proto` (and its imports), for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("clinic_descriptor");

/// `identity.v1`: accounts, sessions, tokens and the organization directory.
pub mod identity {
    /// Version 1 of the identity contract.
    pub mod v1 {
        tonic::include_proto!("identity.v1");
    }
}

/// `clinic.v1`: clinics, members and appointments.
pub mod clinic {
    /// Version 1 of the clinic contract.
    pub mod v1 {
        tonic::include_proto!("clinic.v1");
    }
}
