DO $$BEGIN RAISE NOTICE 'hello from the server'; END$$;
