pub mod fixture;
pub mod sqlite;
pub mod workload;
