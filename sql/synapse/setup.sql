-- What the views need, and who may read them, in a Synapse serverless SQL database. Run by deploy.sh before
-- the views (one sqlcmd batch per GO); every statement may run again.
--
-- Storage is reached with the workspace's managed identity through one external data source, not with each
-- caller's own Azure role: the identity needs Storage Blob Data Reader on the folder $(StorageUrl) (the
-- bundle's synapse_storage_url, where the tables Synapse reads are created), and callers need no storage
-- role at all. Readers get the views' schema and REFERENCES on the credential (a view's OPENROWSET uses it
-- as the caller), nothing else: only tables without personal data are created under $(StorageUrl).

-- A database scoped credential is kept encrypted by the database master key. Its password is never needed
-- again (the service master key opens it), so a random one is made here and not kept.
IF NOT EXISTS (SELECT 1 FROM sys.symmetric_keys WHERE name = '##MS_DatabaseMasterKey##')
BEGIN
    DECLARE @statement NVARCHAR(400) =
        CONCAT('CREATE MASTER KEY ENCRYPTION BY PASSWORD = ''', NEWID(), 'aA1!', NEWID(), '''');
    EXEC sp_executesql @statement;
END;
GO

IF NOT EXISTS (SELECT 1 FROM sys.database_scoped_credentials WHERE name = 'cqrs_orders_identity')
    CREATE DATABASE SCOPED CREDENTIAL cqrs_orders_identity WITH IDENTITY = 'Managed Identity';
GO

-- Dropped and created again, so a new $(StorageUrl) takes effect; the views name it only at run time.
IF EXISTS (SELECT 1 FROM sys.external_data_sources WHERE name = 'cqrs_orders_lake')
    DROP EXTERNAL DATA SOURCE cqrs_orders_lake;
GO

CREATE EXTERNAL DATA SOURCE cqrs_orders_lake
WITH (LOCATION = '$(StorageUrl)', CREDENTIAL = cqrs_orders_identity);
GO

-- The views live in a schema of their own, so one grant covers them and nothing in dbo.
IF SCHEMA_ID('cqrs_orders') IS NULL
    EXEC ('CREATE SCHEMA cqrs_orders');
GO

IF DATABASE_PRINCIPAL_ID('cqrs_orders_readers') IS NULL
    CREATE ROLE cqrs_orders_readers;
GO

GRANT SELECT ON SCHEMA::cqrs_orders TO cqrs_orders_readers;
GO

GRANT REFERENCES ON DATABASE SCOPED CREDENTIAL::cqrs_orders_identity TO cqrs_orders_readers;
GO
