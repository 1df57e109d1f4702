import t from 'tap';
import { Mailbox } from '../../src/kernel/mailbox.js';

t.test('a full mailbox refuses, keeps order, and reuses its slots', async (t) => {
  const box = new Mailbox<number>(3);
  t.ok(box.push(1));
  t.ok(box.push(2));
  t.ok(box.push(3));
  t.notOk(box.push(4), 'fourth push is refused');
  t.equal(box.shift(), 1);
  t.ok(box.push(4));
  t.same(box.takeAll(), [2, 3, 4]);
  t.equal(box.depth, 0);
  t.equal(box.shift(), undefined);
});

t.test('capacity must be a positive integer', async (t) => {
  t.throws(() => new Mailbox(0), /positive integer/);
  t.throws(() => new Mailbox(1.5), /positive integer/);
});
