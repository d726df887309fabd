/** The messages the demo services exchange, each a versioned zod schema. */
import { defineMessage } from '@omnibus/core';
import { z } from 'zod';

export const OrderPlaced = defineMessage({
  type: 'order.placed',
  version: 2,
  schema: z.object({
    orderId: z.string(),
    customerId: z.string(),
    totalCents: z.number().int().positive(),
  }),
  // Version 1 carried a float total in euros under `total`.
  upcast: {
    1: (v1: { orderId: string; customerId: string; total: number }) => ({
      orderId: v1.orderId,
      customerId: v1.customerId,
      totalCents: Math.round(v1.total * 100),
    }),
  },
});

export const PaymentCaptured = defineMessage({
  type: 'payment.captured',
  schema: z.object({ orderId: z.string(), paymentId: z.string(), totalCents: z.number().int() }),
});

export const ShipmentBooked = defineMessage({
  type: 'shipment.booked',
  schema: z.object({ orderId: z.string(), trackingCode: z.string() }),
});
