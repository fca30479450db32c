//! Domain types of accounts: each value can only be built through its parser, so a
//! handler that holds one knows it is valid.

pub mod device;
pub mod password;
pub mod profile;
pub mod role;

pub use device::DeviceClass;
pub use password::{NewPassword, PasswordHasher};
pub use profile::{BirthDate, Country, Email, Login, Region};
pub use role::{Permission, RoleName};
