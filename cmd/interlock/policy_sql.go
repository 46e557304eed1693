package main

import (
	"errors"

	"github.com/interlock/interlock/model"
)

// classifySQL splits SQL into statements and classifies each as the
// postgres handler does.
//
// TEMPORARY until the postgres handler exports its classifier.
func classifySQL(sql string) ([]model.Operation, error) {
	return nil, errors.New("SQL classification is not available in this build yet")
}
