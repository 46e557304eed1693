package main

import (
	"github.com/interlock/interlock/inspect/postgres"
	"github.com/interlock/interlock/model"
)

// classifySQL splits SQL into statements and classifies each exactly as
// the postgres handler does.
func classifySQL(sql string) ([]model.Operation, error) {
	return postgres.Classify(sql)
}
