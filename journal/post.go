package journal

import (
	"context"

	"github.com/interlock/interlock/model"
)

// Post queues a record for the batched path.
//
// TEMPORARY: this first version appends synchronously; the bounded queue
// with gap markers replaces it.
func (j *Journal) Post(rec model.Record) {
	if _, err := j.Append(context.Background(), rec, model.Committed); err != nil {
		j.log.Error("journal: posted record lost", "kind", rec.Kind, "err", err)
	}
}
