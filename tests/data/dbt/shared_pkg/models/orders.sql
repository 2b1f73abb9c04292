-- The same model name as the root project's `orders`: only the package selector may pick it.
-- (No schema test here: dbt 1.11 resolves a package's generic test on `orders` to the root's model.)
select 3 as id
