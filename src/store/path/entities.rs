//! sea-orm entities for the three tables (the `orm` path). Column types mirror
//! `store::schema`: 64-bit integers and text.

pub mod flights {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flights")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i64,
        pub carrier: String,
        pub number: i64,
        pub origin: String,
        pub destination: String,
        pub sched_dep: i64,
        pub sched_arr: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(has_one = "super::flight_status::Entity")]
        FlightStatus,
    }

    impl Related<super::flight_status::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::FlightStatus.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod flight_status {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "flight_status")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub flight_id: i64,
        pub version: i64,
        pub state: String,
        pub delay_minutes: i64,
        pub updated_at: Option<i64>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {
        #[sea_orm(belongs_to = "super::flights::Entity", from = "Column::FlightId", to = "super::flights::Column::Id")]
        Flight,
    }

    impl Related<super::flights::Entity> for Entity {
        fn to() -> RelationDef {
            Relation::Flight.def()
        }
    }

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod delay_events {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "delay_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub flight_id: i64,
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i64,
        pub flight_dep: i64,
        pub kind: String,
        pub delay_minutes: i64,
        pub reason: String,
        pub occurred_at: i64,
        pub schema_version: i64,
        pub cause: Option<String>,
        pub reported_by: Option<String>,
        pub data_key: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
